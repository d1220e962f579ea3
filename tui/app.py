"""mxdash dashboard: watch, compare and launch MXNet/Gluon training runs live (`mxdash` / `mxdash tui`).

Data flow: a timer starts a thread worker that asks the `Poller` for what changed (new metric rows by id, run rows
whose signature changed); the worker posts a `Polled` message; the UI thread applies it to the `DashboardModel`
inside `batch_update()` and tells the visible view. The database is never touched on the UI thread. Stop, resume
and launch run in thread workers too (stop writes through its own store connection; resume and launch run the CLI
in a subprocess: the dashboard never trains in-process and never imports mxnet).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

from experiments.store import Store, StoreError, default_runs_dir
from tui.commands import MxdashCommands
from tui.model import Changes, DashboardModel
from tui.poller import (METRIC_CHUNK_ROWS, CommandResult, MachineProbe, MachineStatus, Poller, PollResult,
                        resume_run)
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import RunDetailScreen
from tui.screens.main import MainScreen
from tui.widgets.header import MachineStatusWidget, TopBar
from tui.widgets.launch import LaunchView, experiment_files
from tui.widgets.runs_table import RunsView

POLL_INTERVAL_S = 1.0
MACHINE_INTERVAL_S = 2.0
STOPPABLE = ("queued", "running")
RESUMABLE = ("stopped", "lost", "failed")


class Polled(Message):
    def __init__(self, result: PollResult) -> None:
        super().__init__()
        self.result = result


class MachineUpdated(Message):
    def __init__(self, status: MachineStatus) -> None:
        super().__init__()
        self.status = status


class MxdashApp(App):
    """The dashboard. Everything outside the process is injected, so tests drive it with fakes:
    `store_factory(runs_dir)` (default `Store`), `clock()` (ages, durations), `machine_probe()` (None: psutil/NVML;
    False: no machine status), `command_runner` (subprocess.run-like, for resume and launch)."""

    CSS_PATH = "mxdash.tcss"
    TITLE = "mxdash"
    COMMANDS = App.COMMANDS | {MxdashCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("1", "show_tab('runs')", "Runs", show=False),
        Binding("2", "show_tab('curves')", "Curves", show=False),
        Binding("3", "show_tab('lr')", "LR", show=False),
        Binding("4", "show_tab('dead')", "Dead", show=False),
        Binding("5", "show_tab('compare')", "Compare", show=False),
        Binding("6", "show_tab('launch')", "Launch", show=False),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, runs_dir=None, store_factory: Callable | None = None, poll_interval: float = POLL_INTERVAL_S,
                 clock: Callable[[], float] = time.time, machine_probe: Callable | bool | None = None,
                 machine_interval: float = MACHINE_INTERVAL_S, chunk_rows: int = METRIC_CHUNK_ROWS,
                 command_runner: Callable = subprocess.run, experiments_dir=None):
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.store_factory = store_factory
        self.poll_interval = poll_interval
        self.clock = clock
        self.machine_probe = MachineProbe() if machine_probe is None else machine_probe
        self.machine_interval = machine_interval
        self.command_runner = command_runner
        self.experiments_dir = Path(experiments_dir) if experiments_dir is not None else None
        self.model = DashboardModel()
        self.poller = Poller(self.runs_dir, store_factory, chunk_rows=chunk_rows, clock=clock)
        self.selected: set[str] = set()
        self.cursor_run: str | None = None
        self.store_message: str | None = None  # why there is no store yet (empty state)
        self.catching_up = False
        self.polls = 0
        self.first_rows_at: float | None = None  # perf_counter when the first run rows were on screen
        self.started_at = time.perf_counter()
        self.machine_status: MachineStatus | None = None
        self._polling = False
        self._poll_error: str | None = None
        self._poll_timer = None
        self._main_ready = False
        self._early: list[Polled] = []

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        self.sub_title = str(self.runs_dir)
        self._poll_timer = self.set_interval(self.poll_interval, self.poll)
        self.poll()  # the first read runs in its thread while the screen is being built

    def start_polling(self) -> None:
        """Called by the main screen once its views are mounted: apply what was read meanwhile."""
        if self._main_ready:
            return
        self._main_ready = True
        early, self._early = self._early, []
        for message in early:
            self.on_polled(message)
        if self.catching_up and not self._polling:
            self.poll()
        if self.machine_probe:
            self.set_interval(self.machine_interval, self._probe_machine)
            self._probe_machine()

    def on_unmount(self) -> None:
        self.poller.close()

    @property
    def busy(self) -> bool:
        """Still reading or showing the store: a poll in flight, catching up, or the runs table filling."""
        if self._polling or self.catching_up or not self.polls:
            return True
        try:
            return self.main.runs_view.filling
        except Exception:
            return True

    @property
    def main(self) -> MainScreen:
        return self.get_default_screen_instance()

    def get_default_screen_instance(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("main screen not mounted")

    # -- polling --------------------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Start a poll unless one is in flight (thread workers cannot be cancelled: never run two)."""
        if self._polling:
            return
        self._polling = True
        self._poll_worker()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_worker(self) -> None:
        worker = get_current_worker()
        result = self.poller.poll()
        if not worker.is_cancelled:
            self.post_message(Polled(result))

    def on_polled(self, message: Polled) -> None:
        if not self._main_ready:
            self._early.append(message)
            return
        result = message.result
        self.polls += 1
        self.store_message = None if result.store_ok else result.message
        self._poll_error = result.message if result.store_ok and result.message else None
        self.catching_up = result.more
        with self.batch_update():
            changes = self.model.apply(result.batch, result.run_rows, result.removed)
            if changes.removed & self.selected:
                self.selected -= changes.removed
            self._dispatch(changes)
            if not result.store_ok or result.first:
                self.main.runs_view.show_empty(self.store_message)
        if self.first_rows_at is None and (self.model.runs or not result.store_ok or not result.more):
            self.first_rows_at = time.perf_counter()
            self.call_after_refresh(self.main.mount_deferred_views)
        if result.lost:
            self.notify(f"lost (worker vanished): {', '.join(result.lost[:5])}"
                        + (" …" if len(result.lost) > 5 else ""), severity="warning")

    def _dispatch(self, changes: Changes) -> None:
        try:
            main = self.main
        except LookupError:
            return
        main.model_changed(changes)
        screen = self.screen
        if isinstance(screen, RunDetailScreen) and screen.run_id in changes.all:
            screen.run_changed()
            self.refresh_topbar(screen.query_one(TopBar))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A poll worker finished: the next poll may start (at once while catching up with a big store)."""
        if event.worker.group == "poll" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                               WorkerState.CANCELLED):
            self._polling = False
            if event.state == WorkerState.SUCCESS and self.catching_up:
                self.poll()  # the next chunk at once
            if event.state == WorkerState.ERROR:
                error = event.worker.error
                message = f"poll failed: {type(error).__name__}: {error}"
                if message != self._poll_error:
                    self._poll_error = message
                    self.notify(message, severity="error", timeout=8)

    def action_refresh(self) -> None:
        self.poller.invalidate()
        self.poll()

    # -- top bar / machine ----------------------------------------------------------------------------------------
    def refresh_topbar(self, topbar: TopBar) -> None:
        statuses = Counter(run.get("status") for run in self.model.runs.values())
        topbar.show_counts(statuses, len(self.model.runs))
        if self.store_message is not None:
            live = Text("○ no store", style="dim")
        elif self._poll_error:
            live = Text("● read error", style="red")
        elif self.catching_up:
            live = Text(f"◌ loading {self.model.points:,} pts", style="yellow")
        else:
            live = Text("● live", style="green")
        topbar.show_live(live)
        if self.machine_status is not None:
            topbar.query_one(MachineStatusWidget).show(self.machine_status)

    @work(thread=True, exclusive=True, group="machine", exit_on_error=False)
    def _probe_machine(self) -> None:
        worker = get_current_worker()
        status = self.machine_probe()
        if not worker.is_cancelled:
            self.post_message(MachineUpdated(status))

    def on_machine_updated(self, message: MachineUpdated) -> None:
        self.machine_status = message.status
        for widget in self.screen.query(MachineStatusWidget):
            widget.show(message.status)

    # -- selection / views ----------------------------------------------------------------------------------------
    def plot_selection(self) -> tuple[list[str], str]:
        """Runs the plots and Compare show: the selection, else the highlighted run's experiment, else the newest."""
        if self.selected:
            ids = [rid for rid in self.model.runs if rid in self.selected]
            return ids, f"{len(ids)} selected"
        experiment = None
        try:
            cursor = self.main.runs_view.cursor_run_id()
        except Exception:
            cursor = self.cursor_run
        if cursor and cursor in self.model.runs:
            experiment = self.model.runs[cursor].get("experiment_id")
        if experiment is None:
            experiments = self.model.experiments()
            experiment = experiments[-1] if experiments else None
        if experiment is None:
            return [], "no runs"
        return self.model.runs_of(experiment), f"experiment {experiment}; select runs with space to choose"

    def on_runs_view_cursor_moved(self, message: RunsView.CursorMoved) -> None:
        self.cursor_run = message.run_id

    def set_selected(self, selected: set[str]) -> None:
        changed = self.selected ^ selected
        self.selected = set(selected)
        self.main.selection_changed(changed)

    def toggle_selected(self, run_ids: list[str]) -> None:
        self.set_selected(self.selected ^ set(run_ids))

    def select_experiment(self, experiment_id: str) -> None:
        self.set_selected(set(self.model.runs_of(experiment_id)))

    def action_select_all(self) -> None:
        self.main.runs_view.action_select_all()

    def action_clear_selection(self) -> None:
        self.set_selected(set())

    def action_show_tab(self, tab: str) -> None:
        if self.screen is not self.main:
            self.pop_screen()
        self.main.show_tab(tab)

    def set_runs_filter(self, text: str) -> None:
        self.action_show_tab("runs")
        self.main.runs_view.set_filter(text)

    def sort_runs(self, key: str) -> None:
        self.action_show_tab("runs")
        self.main.runs_view.set_sort(key, reverse=False)

    def experiment_files(self) -> list[Path]:
        return experiment_files(self.runs_dir, self.experiments_dir)

    def open_launch(self, path: Path) -> None:
        self.action_show_tab("launch")
        self.call_later(self._open_launch, path)

    async def _open_launch(self, path: Path) -> None:
        await self.main.ensure_view("launch")
        view = self.main.query_one(LaunchView)
        options = view.query_one("#launch-files")
        for index in range(options.option_count):
            if options.get_option_at_index(index).id == str(path):
                options.highlighted = index
                break

    def on_launch_view_launched(self, message: LaunchView.Launched) -> None:
        result = message.result
        if result.ok:
            exp = result.payload.get("experiment", "")
            self.notify(f"started {exp}: {len(result.payload.get('runs', []))} runs", title="launch")
            self.poller.invalidate()
            self.poll()
        else:
            self.notify(result.message.splitlines()[-1] if result.message else "launch failed",
                        title="launch failed", severity="error", timeout=10)

    # -- run actions ----------------------------------------------------------------------------------------------
    def open_detail(self, run_id: str) -> None:
        if run_id not in self.model.runs:
            self.notify(f"unknown run {run_id}", severity="warning")
            return
        if isinstance(self.screen, RunDetailScreen):
            self.pop_screen()
        self.push_screen(RunDetailScreen(run_id))

    def action_open_cursor_run(self) -> None:
        run_id = self.main.runs_view.cursor_run_id()
        if run_id:
            self.open_detail(run_id)

    def log_path(self, run_id: str) -> Path | None:
        store = self.poller.store
        if store is not None and hasattr(store, "log_path"):
            return Path(store.log_path(run_id))
        return self.runs_dir / run_id / "log.txt"

    def action_stop_selected(self) -> None:
        self.stop_runs(self.main.runs_view.target_runs())

    def action_resume_selected(self) -> None:
        self.resume_runs(self.main.runs_view.target_runs())

    def stop_runs(self, run_ids: list[str]) -> None:
        runs = [self.model.runs[rid] for rid in run_ids if rid in self.model.runs]
        active = [run["id"] for run in runs if run.get("status") in STOPPABLE]
        if not active:
            self.notify("nothing to stop: no queued or running run chosen", severity="warning")
            return
        names = ", ".join(active[:6]) + (f" and {len(active) - 6} more" if len(active) > 6 else "")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._stop_worker(active)

        self.push_screen(ConfirmScreen(f"Stop {len(active)} run{'s' if len(active) > 1 else ''}?",
                                       f"{names}\nRunning runs checkpoint and stop at their next flush."), confirmed)

    @work(thread=True, group="actions", exit_on_error=False)
    def _stop_worker(self, run_ids: list[str]) -> None:
        factory = self.store_factory or Store
        try:
            store = factory(self.runs_dir)
        except StoreError as e:
            self.call_from_thread(self.notify, str(e), severity="error")
            return
        results = []
        try:
            for run_id in run_ids:
                try:
                    results.append(f"{run_id}: {store.request_stop(run_id)}")
                except StoreError as e:
                    results.append(str(e))
        finally:
            if store is not self.poller.store and hasattr(store, "close"):
                store.close()
        self.poller.invalidate()
        self.call_from_thread(self._action_done, "stop requested", results)

    def resume_runs(self, run_ids: list[str]) -> None:
        runs = [self.model.runs[rid] for rid in run_ids if rid in self.model.runs]
        resumable = [run["id"] for run in runs if run.get("status") in RESUMABLE]
        if not resumable:
            self.notify("nothing to resume: only stopped, lost or failed runs resume", severity="warning")
            return
        self.notify(f"resuming {', '.join(resumable[:6])}{' …' if len(resumable) > 6 else ''}", timeout=3)
        self._resume_worker(resumable)

    @work(thread=True, group="actions", exit_on_error=False)
    def _resume_worker(self, run_ids: list[str]) -> None:
        result: CommandResult = resume_run(run_ids, self.runs_dir, runner=self.command_runner)
        self.poller.invalidate()
        lines = [result.message] if result.message else []
        self.call_from_thread(self._action_done, "resume" if result.ok else "resume failed", lines, not result.ok)

    def _action_done(self, title: str, lines: list[str], error: bool = False) -> None:
        text = "\n".join(lines[:8]) + (f"\n… {len(lines) - 8} more" if len(lines) > 8 else "")
        self.notify(text or title, title=title, severity="error" if error else "information",
                    timeout=8 if error else 4)
        self.poll()


def main(runs_dir=None) -> int:
    """Entry point for `mxdash` / `mxdash tui` (the CLI passes --runs-dir) and `python -m tui.app`."""
    app = MxdashApp(runs_dir if runs_dir is not None else default_runs_dir())
    app.run()
    return app.return_code or 0


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tui.app", description="the mxdash dashboard")
    parser.add_argument("--runs-dir", type=Path, default=default_runs_dir())
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(_parse_args().runs_dir))
