"""A one-line Static for text that changes every poll (top bar counts, the Runs status line)."""
from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static


class LiveText(Static):
    """`show_text(text)` skips an unchanged text and repaints without a layout when the width stays the same.

    Static.update asks for a layout every time; with auto widths that re-arranged and repainted the whole screen
    once per poll per widget (three top-bar parts and the Runs status line), and a key press arriving meanwhile
    waited behind it (benchmarks/tui_bench.py, 2 runs training)."""

    _shown: Text | str | None = None

    def show_text(self, text: Text | str) -> None:
        if self._shown is not None and _same(text, self._shown):
            return
        same_width = self._shown is not None and cell_len(str(text)) == cell_len(str(self._shown))
        self._shown = text.copy() if isinstance(text, Text) else text
        self.update(text, layout=not same_width)


def _same(a: Text | str, b: Text | str) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.spans == b.spans and a.style == b.style
    return type(a) is type(b) and a == b
