"""The runs table widget: a FastDataTable whose row keys are run ids; `space` asks to toggle the highlighted run."""
from __future__ import annotations

from textual.binding import Binding
from textual.message import Message

from tui._textual_hacks import FastDataTable


class RunsTable(FastDataTable):
    BINDINGS = [
        Binding("space", "toggle_select", "Select", key_display="space"),
        Binding("enter", "select_cursor", "Open run detail", show=False),  # DataTable's, said as what it does here
    ]

    class ToggleSelect(Message):
        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    def action_toggle_select(self) -> None:
        run_id = self.cursor_run_id()
        if run_id is not None:
            self.post_message(self.ToggleSelect(run_id))
            if self.cursor_row < self.row_count - 1:
                self.move_cursor(row=self.cursor_row + 1)

    def cursor_run_id(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        key = self.row_key_at(self.cursor_row)
        return key.value if key is not None else None

    def row_ids(self) -> list[str]:
        """Run ids in display order."""
        return [key.value for key in self.ordered_keys()]
