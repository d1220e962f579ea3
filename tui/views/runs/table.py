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

    def show_run(self, run_id: str | None) -> str | None:
        """Put the cursor on `run_id` and scroll it into view; with None, on the first row and scrolled to the
        top. Returns the run the cursor is on."""
        if not self.row_count:
            return None
        if run_id is not None:
            self.move_cursor(row=self.get_row_index(run_id), animate=False)
        else:
            self.move_cursor(row=0, animate=False)
            self.scroll_to(y=0, animate=False)
        return self.cursor_run_id()

    def row_ids(self) -> list[str]:
        """Run ids in display order."""
        return [key.value for key in self.ordered_keys()]
