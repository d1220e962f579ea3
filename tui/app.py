"""mxdash dashboard: watch, compare and launch MXNet/Gluon training runs live (`mxdash` / `mxdash tui`).

Data flow (Memray's live TUI): a timer starts a thread worker that asks the `Poller` for what changed; the worker
posts `Polled`; the UI thread applies it to the `DashboardModel` inside `batch_update()` and tells the visible view.
The database is never touched on the UI thread. Views post messages up (selection, legend, colour key, run actions)
and the app, which owns that state (`PlotState`: it must be the same in every tab), handles them. Stop, resume and
launch run in thread workers (stop writes through its own store connection; resume and launch run the CLI in a
subprocess: the dashboard never trains in-process and never imports mxnet).
"""
from __future__ import annotations

import argparse
import asyncio
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

from experiments.metrics import (ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS, ARTIFACT_CONFUSION,
                                 ARTIFACT_LR_SUGGESTION, LRFIND_KIND, display_status)
from experiments.store import default_runs_dir
from tui.actions import LessonActions, RunActions
from tui.commands import MxdashCommands
from tui.machine import MachineProbe, MachineStatus
from tui.model import Changes, DashboardModel
from tui.poller import BROKEN, METRIC_CHUNK_ROWS, Poller, PollResult
from tui.screens.detail import RunDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.selection import COMPARE_CAP, PlotState
from tui.views.base import PlotView
from tui.views.launch import LaunchView, experiment_files
from tui.views.runs import RunsView
from tui.views.runs.view import LOADING, READY
from tui.widgets.header import MachineStatusWidget, TopBar

POLL_INTERVAL_S = 1.0
MACHINE_INTERVAL_S = 2.0


class Polled(Message):
    def __init__(self, result: PollResult) -> None:
        super().__init__()
        self.result = result


class MachineUpdated(Message):
    def __init__(self, status: MachineStatus) -> None:
        super().__init__()
        self.status = status


class MxdashApp(RunActions, LessonActions, App):
    """The dashboard. Everything outside the process is injected, so tests drive it with fakes:
    `store_factory(runs_dir)` (default `Store`), `clock()` (ages, durations, stale), `machine_probe()` (None:
    psutil/NVML; False: no machine status), `command_runner` (subprocess.run-like, for resume and launch),
    `process_starter` (subprocess.Popen-like, for the LR range test, which runs in its own process until done)."""

    CSS_PATH = "mxdash.tcss"
    TITLE = "mxdash"
    COMMANDS = App.COMMANDS | {MxdashCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("1", "show_tab('runs')", "Runs", show=False),
        Binding("2", "show_tab('curves')", "Curves", show=False),
        Binding("3", "show_tab('lr')", "LR effects", show=False),
        Binding("4", "show_tab('dead')", "Dead ReLUs", show=False),
        Binding("5", "show_tab('compare')", "Compare", show=False),
        Binding("6", "show_tab('launch')", "Launch", show=False),
        Binding("7", "show_tab('boundary')", "Boundaries", show=False),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, runs_dir=None, store_factory: Callable | None = None, poll_interval: float = POLL_INTERVAL_S,
                 clock: Callable[[], float] = time.time, machine_probe: Callable | bool | None = None,
                 machine_interval: float = MACHINE_INTERVAL_S, chunk_rows: int = METRIC_CHUNK_ROWS,
                 command_runner: Callable = subprocess.run, experiments_dir=None,
                 process_starter: Callable = subprocess.Popen):
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.store_factory = store_factory
        self.poll_interval = poll_interval
        self.clock = clock
        self.machine_probe = MachineProbe() if machine_probe is None else machine_probe
        self.machine_interval = machine_interval
        self.command_runner = command_runner
        self.process_starter = process_starter  # Popen-like, for `mxdash lrfind` (it runs until it is done)
        self.experiments_dir = Path(experiments_dir) if experiments_dir is not None else None
        self.model = DashboardModel()
        self.poller = Poller(self.runs_dir, store_factory, chunk_rows=chunk_rows, clock=clock)
        self.state = PlotState()
        self.selected = self.state.selected  # the same set object the Runs view reads
        self.store_state = LOADING
        self.store_message: str | None = None
        self.catching_up = False
        self.polls = 0
        self.first_rows_at: float | None = None  # perf_counter when the first run rows were on screen
        self.machine_status: MachineStatus | None = None
        self._polling = False
        self._poll_error: str | None = None
        self._main_ready = False
        self._early: list[Polled] = []
        self.exiting = False
        self.boundaries_shown = False  # the Boundaries view was opened: its runs' boundary frames are read

    def exit(self, *args, **kwargs) -> None:
        self.exiting = True  # workers finishing from now on have nothing to show (the screens are going)
        super().exit(*args, **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        self.sub_title = str(self.runs_dir)
        self.set_interval(self.poll_interval, self.poll)
        self.poll()  # the first read runs in its thread while the screen is being built

    def start_polling(self) -> None:
        """Called by the main screen once its views are mounted: apply what was read meanwhile."""
        if self._main_ready:
            return
        self._main_ready = True
        early, self._early = self._early, []
        for message in early:
            self.on_polled(message)
        if self.machine_probe:
            self.set_interval(self.machine_interval, self._probe_machine)
            self._probe_machine()

    def on_unmount(self) -> None:
        self.poller.close()

    @property
    def alive(self) -> bool:
        """False once the app is exiting (its screen stack may be empty: nothing may query `self.screen`)."""
        return bool(self.screen_stack) and not self.exiting

    @property
    def busy(self) -> bool:
        """Still reading or showing the store: a poll in flight, catching up, wanted runs loading, rows filling."""
        if (self._polling or self.catching_up or not self.polls or self.poller.pending
                or self.poller.artifacts_pending):
            return True
        try:
            return self.main.runs_view.filling or bool(self.main.refresh_due)
        except Exception:
            return True

    @property
    def main(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("main screen not mounted")

    # -- polling --------------------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Start a poll unless one is in flight (thread workers cannot be cancelled: never run two)."""
        if self._polling or not self.alive:
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
        if not self.alive:
            return
        if not self._main_ready:
            self._early.append(message)
            return
        result = message.result
        self.polls += 1
        self.store_state = result.state
        self.store_message = result.message if not result.store_ok else None
        self._poll_error = result.message if result.store_ok and result.message else None
        self.catching_up = result.more
        with self.batch_update():
            changes = self.model.apply(result.batch, result.run_rows, result.removed, reset=result.reset,
                                       artifacts=result.artifacts, experiments=result.experiments)
            if changes.removed & self.selected:
                self.selected.difference_update(changes.removed)
            self.main.model_changed(changes)
            screen = self.screen
            if isinstance(screen, RunDetailScreen) and screen.run_id in changes.all:
                screen.run_changed()
                self.refresh_topbar(screen.query_one(TopBar))
            if changes.runs or changes.removed or result.first or not result.store_ok:
                self.main.runs_view.show_state(READY if result.store_ok else result.state, self.store_message)
            if changes.runs or changes.removed:
                self.replan()
        if self.first_rows_at is None and (self.model.runs or not result.store_ok or not result.more):
            self.first_rows_at = time.perf_counter()
            self.call_after_refresh(self.main.mount_deferred_views)
        if result.lost:
            self.notify(f"lost (worker vanished): {', '.join(result.lost[:5])}"
                        + (" …" if len(result.lost) > 5 else ""), severity="warning")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A poll worker finished: the next poll may start (at once while catching up or loading)."""
        if event.worker.group != "poll" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                 WorkerState.CANCELLED):
            return
        self._polling = False
        if event.state == WorkerState.SUCCESS and (self.catching_up or self.poller.pending
                                                   or self.poller.artifacts_pending):
            self.poll()  # the next chunk at once
        if event.state == WorkerState.ERROR and self.alive:
            error = event.worker.error
            message = f"poll failed: {type(error).__name__}: {error}"
            if message != self._poll_error:
                self._poll_error = message
                self.notify(message, severity="error", timeout=8)

    def action_refresh(self) -> None:
        self.poller.invalidate()
        self.poll()

    # -- what the plots show ----------------------------------------------------------------------------------------
    def _shown(self) -> tuple[list[str], str, int]:
        try:
            view = self.main.runs_view
        except LookupError:
            return list(self.model.runs), "", len(self.model.runs)
        return view.shown_run_ids(), view.filter.text, view.shown_total()

    def plot_selection(self) -> tuple[list[str], str]:
        """The runs the plots show and what they are: the selection, else the runs the filter shows (capped)."""
        plan = self.state.plan
        return [rid for unit in plan.units for rid in unit.run_ids], plan.title

    def plan_run_ids(self) -> list[str]:
        return self.plot_selection()[0]

    def compare_selection(self) -> tuple[list[str], str]:
        shown, filter_text, total = self._shown()
        return self.state.runs(self.model, shown, filter_text, COMPARE_CAP, total)

    def replan(self) -> None:
        """Recompute the plot plan (runs, units, colours, legend) and tell the visible view if it changed."""
        if not self.alive:
            return
        before = self.state.plan
        plan = self.state.make_plan(self.model, *self._shown())
        self._update_wanted()
        if plan != before:
            try:
                self.main.plan_changed()
            except LookupError:
                pass

    def _update_wanted(self) -> None:
        """Tell the poller whose metrics the views need; read them now if some are missing."""
        wanted = set(self.plan_run_ids())
        try:
            if self.main.active_tab == "compare":
                wanted.update(self.compare_selection()[0])
        except (LookupError, Exception):
            pass
        plotted = set(self.plan_run_ids())
        detail = {self.screen.run_id} if isinstance(self.screen, RunDetailScreen) else set()
        wanted |= detail
        range_tests = {rid for rid in plotted if self.model.runs.get(rid, {}).get("kind") == LRFIND_KIND}
        artifacts = {ARTIFACT_LR_SUGGESTION: range_tests, ARTIFACT_CONFUSION: detail}
        if self.boundaries_shown:  # boundary frames are big: read only once the view was opened
            artifacts[ARTIFACT_BOUNDARY] = artifacts[ARTIFACT_BOUNDARY_POINTS] = plotted
        if self.poller.set_wanted(wanted, artifacts):
            self.poll()

    @property
    def plan(self):
        return self.state.plan

    def view_switched(self, tab: str) -> None:
        self.boundaries_shown |= tab == "boundary"
        self._update_wanted()

    def on_runs_view_shown_changed(self, message: RunsView.ShownChanged) -> None:
        self.replan()

    def on_runs_view_selection_toggled(self, message: RunsView.SelectionToggled) -> None:
        ids = set(message.run_ids)
        if message.select is None:
            changed = ids
            self.selected.symmetric_difference_update(ids)
        elif message.select:
            changed = ids - self.selected
            self.selected.update(ids)
        else:
            changed = ids & self.selected
            self.selected.difference_update(ids)
        self.main.runs_view.refresh_selection(changed)
        self.replan()

    def set_selected(self, run_ids) -> None:
        """Replace the selection (palette commands, tests)."""
        changed = self.selected ^ set(run_ids)
        self.selected.clear()
        self.selected.update(run_ids)
        self.main.runs_view.refresh_selection(changed)
        self.replan()

    def select_experiment(self, experiment_id: str) -> None:
        self.set_selected({rid for rid, run in self.model.runs.items() if run.get("experiment_id") == experiment_id})

    def on_plot_view_legend_moved(self, message: PlotView.LegendMoved) -> None:
        self.state.move_focus(message.delta)
        self.replan()

    def on_plot_view_legend_toggled(self, message: PlotView.LegendToggled) -> None:
        if self.state.toggle_hidden() is None:
            self.notify("move the legend cursor onto a run first (up/down)", timeout=3)
        self.replan()

    def on_plot_view_legend_show_all(self, message: PlotView.LegendShowAll) -> None:
        self.state.show_all()
        self.replan()

    def on_plot_view_color_key_cycled(self, message: PlotView.ColorKeyCycled) -> None:
        key = self.state.cycle_color_key(self.model)
        self.notify(f"colour by {key}", timeout=2)
        self.replan()

    def on_plot_view_bands_toggled(self, message: PlotView.BandsToggled) -> None:
        self.state.aggregate = not self.state.aggregate
        self.notify("seed groups: mean + band" if self.state.aggregate else "seed groups: every run", timeout=2)
        self.replan()

    # -- views ----------------------------------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        if self.screen is not self.main:
            self.pop_screen()
        self.main.show_tab(tab)

    def action_filter(self) -> None:
        """`/` anywhere: the Runs filter (an app key, so it works while a tab switch still moves the focus)."""
        self.action_show_tab("runs")
        self.main.runs_view.action_focus_filter()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def set_runs_filter(self, text: str) -> None:
        self.action_show_tab("runs")
        self.main.runs_view.set_filter(text)

    def sort_runs(self, key: str) -> None:
        self.action_show_tab("runs")
        self.main.runs_view.set_sort(key, reverse=False)

    def experiment_files(self) -> list[Path]:
        return experiment_files(self.runs_dir, self.experiments_dir)

    def open_launch(self, path: Path, overrides: list[str] | None = None) -> None:
        """The Launch view with `path` highlighted (and these `--set` items): its preview shows what would run."""
        self.action_show_tab("launch")
        self.call_later(self._open_launch, path, overrides)

    async def _open_launch(self, path: Path, overrides: list[str] | None) -> None:
        await self.main.ensure_view("launch")
        view = self.main.query_one(LaunchView)
        for _ in range(100):  # mounted, its file list not yet filled: next frame
            if view.query("#launch-files") and view.query_one("#launch-files").option_count:
                break
            await asyncio.sleep(0.01)
        view.show_file(path, overrides)

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

    # -- top bar / machine ----------------------------------------------------------------------------------------
    def refresh_topbar(self, topbar: TopBar) -> None:
        now = self.clock()
        statuses = Counter(display_status(run, now) for run in self.model.runs.values())
        topbar.show_counts(statuses, len(self.model.runs))
        if self.store_state == BROKEN:
            live = Text("● store unreadable", style="red")
        elif self.store_message is not None:
            live = Text("○ no store", style="dim")
        elif self._poll_error:
            live = Text("● read error", style="red")
        elif self.catching_up or self.poller.pending:
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
        if not self.alive:  # a probe finishing while the app exits: no screen to show it on
            return
        for widget in self.screen.query(MachineStatusWidget):
            widget.show(message.status)

    # -- run actions ----------------------------------------------------------------------------------------------
    def on_runs_view_run_action(self, message: RunsView.RunAction) -> None:
        {"stop": self.stop_runs, "resume": self.resume_runs, "compare": lambda ids: self.action_show_tab("compare"),
         "open": lambda ids: self.open_detail(ids[0]) if ids else None}[message.action](message.run_ids)

    def on_runs_view_cursor_moved(self, message: RunsView.CursorMoved) -> None:
        pass  # the plots follow the filter and the selection, not the cursor

    def open_detail(self, run_id: str) -> None:
        if run_id not in self.model.runs:
            self.notify(f"unknown run {run_id}", severity="warning")
            return
        if isinstance(self.screen, RunDetailScreen):
            self.pop_screen()
        self.push_screen(RunDetailScreen(run_id))
        self.call_after_refresh(self._update_wanted)

    def action_open_cursor_run(self) -> None:
        run_id = self.main.runs_view.cursor_run_id()
        if run_id:
            self.open_detail(run_id)

    def log_path(self, run_id: str) -> Path | None:
        store = self.poller.store
        if store is not None and hasattr(store, "log_path"):
            return Path(store.log_path(run_id))
        return self.runs_dir / run_id / "log.txt"


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
