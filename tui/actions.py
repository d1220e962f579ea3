"""Actions of the dashboard (mixins of the app). Run actions: stop (asks first, then writes the stop request through
its own store connection in a thread worker) and resume (the CLI in a subprocess); both report back with a notice and
poll at once. Lesson actions: what follows an LR range test (show its runs; plan a sweep around its suggestions)."""
from __future__ import annotations

from textual import work

from experiments.metrics import RESUMABLE, STOPPABLE
from experiments.store import Store, StoreError
from tui.cli_runner import CommandResult, resume_run
from tui.screens.confirm import ConfirmScreen
from tui.views.lr_range import lr_sweep_plan


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


class LessonActions:
    """Needs the app's `model`, `poller`, `main`, `experiment_files()`, `open_launch()`."""

    def on_launch_view_range_test_done(self, message) -> None:
        result = message.result
        self.poller.invalidate()
        self.poll()
        if not result.ok:
            self.notify(result.message.splitlines()[-1] if result.message else "LR range test failed",
                        title="LR range test failed", severity="error", timeout=10)
            return
        tests = result.payload.get("tests", [])
        experiment = tests[0]["run"].rsplit(".", 1)[0] if tests else None
        if experiment:
            self.main.runs_view.set_filter(f"exp:{experiment}")  # LR effects (3) shows exactly these tests
        self.notify(f"{experiment}: {len(tests)} tests done; the Runs filter shows them. 3: LR effects, where w "
                    "plans a sweep around the suggestions", title="LR range test", timeout=8)

    def on_lr_effects_view_sweep_requested(self, message) -> None:
        self.plan_lr_sweep(message.run_ids)

    def plan_lr_sweep(self, run_ids: list[str]) -> None:
        """Open the Launch view with a sweep around the suggested LRs of these range tests (tui/sweep.py)."""
        plan = lr_sweep_plan(self.model, run_ids, self.experiment_files())
        if isinstance(plan, str):
            self.notify(plan, severity="warning", timeout=6)
            return
        path, overrides, note = plan
        self.open_launch(path, overrides)
        self.notify(note + ": check the preview, ctrl+l starts it", title="sweep around the suggestions", timeout=6)
