"""The Launch view's two fields that behave unlike a plain Input: the parallel field (1..runs, through Textual's
validation, which marks the field -invalid) and the `--set` field (focus adds to its items, not replaces them)."""
from __future__ import annotations

from textual.validation import ValidationResult, Validator
from textual.widgets import Input

from tui.views.launch_plan import check_parallel


class ParallelRuns(Validator):
    """The parallel field: 1..the runs of the launch (empty: auto). `restrict=` keeps letters out, not 0 or 600; the
    view sets `run_count` to what it planned before it validates."""

    def __init__(self) -> None:
        super().__init__()
        self.run_count = 1

    def validate(self, value: str) -> ValidationResult:
        try:
            check_parallel(value, self.run_count)
        except ValueError as e:
            return self.failure(str(e))
        return self.success()


class SetItemsInput(Input):
    """The `--set` field. Focus puts the cursor after the items there, a space on, instead of selecting them all
    (Input's default): the next keys add an item to a planned sweep rather than replace the sweep."""

    def __init__(self, **kwargs) -> None:
        super().__init__(select_on_focus=False, **kwargs)

    def _on_focus(self, event) -> None:
        super()._on_focus(event)
        if self.value and not self.value.endswith(" "):
            self.value += " "
        self.cursor_position = len(self.value)
