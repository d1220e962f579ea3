"""Run actions of the dashboard (a mixin of the app): stop (asks first, then writes the stop request through its
own store connection in a thread worker) and resume (the CLI in a subprocess). Both report back with a notice and
poll at once."""
from __future__ import annotations

from textual import work

from experiments.metrics import RESUMABLE, STOPPABLE
from experiments.store import Store, StoreError
from tui.cli_runner import CommandResult, resume_run
from tui.screens.confirm import ConfirmScreen


class RunActions:
    """Needs the app's `model`, `runs_dir`, `store_factory`, `poller`, `command_runner`, `main`."""

    def action_stop_selected(self) -> None:
        self.stop_runs(self.main.runs_view.target_runs())

    def action_resume_selected(self) -> None:
        self.resume_runs(self.main.runs_view.target_runs())

    def action_select_all(self) -> None:
        self.main.runs_view.action_select_all()

    def action_clear_selection(self) -> None:
        self.set_selected(set())

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
        try:
            store = (self.store_factory or Store)(self.runs_dir)
        except (StoreError, OSError) as e:
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
