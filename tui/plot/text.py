"""Text assembly for charts: a fixed-size block of lines with styled spans, and the legend layout."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from rich.text import Span, Text

from tui.plot.canvas import style_runs

AXIS_STYLE = "grey50"
TICK_STYLE = "grey62"
TITLE_STYLE = "bold"
HINT_STYLE = "italic grey62"
FOCUS_STYLE = "reverse"  # the legend entry the keyboard cursor is on
HIDDEN_STYLE = "grey39 strike"  # a legend entry whose line is hidden


@dataclass
class LegendEntry:
    """One legend item: `swatch` drawn in `color`, then `label`; `focused` (keyboard cursor) and `hidden` (its line
    is not drawn) change how the label looks."""
    swatch: str
    color: str
    label: str
    focused: bool = False
    hidden: bool = False


class Lines:
    """Fixed-size block of text lines being assembled: plain strings plus styled spans (per-line offsets)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.rows = [[" "] * width for _ in range(height)]
        self.spans: list[list[tuple[int, int, str]]] = [[] for _ in range(height)]

    def write(self, row: int, col: int, text: str, style: Optional[str] = None) -> int:
        """Write `text` at (row, col), cropped to the width; returns the column after it."""
        if not (0 <= row < self.height) or col >= self.width or not text:
            return col
        text = text[: max(0, self.width - col)]
        self.rows[row][col: col + len(text)] = list(text)
        if style:
            self.spans[row].append((col, col + len(text), style))
        return col + len(text)

    def put_block(self, row: int, col: int, codes: np.ndarray, cell_style: np.ndarray, styles: list) -> None:
        """Copy a canvas (code points + style ids per cell) into the lines at (row, col)."""
        for r in range(codes.shape[0]):
            self.rows[row + r][col: col + codes.shape[1]] = list(codes[r].tobytes().decode("utf-32-le"))
            starts, ends, ids = style_runs(cell_style[r])
            self.spans[row + r].extend(
                (col + int(s), col + int(e), styles[int(i)]) for s, e, i in zip(starts, ends, ids))

    def to_text(self) -> Text:
        plain_lines = ["".join(row) for row in self.rows]
        spans, offset = [], 0
        for line, line_spans in zip(plain_lines, self.spans):
            spans.extend(Span(offset + s, offset + e, style) for s, e, style in line_spans)
            offset += len(line) + 1
        return Text("\n".join(plain_lines), spans=spans, no_wrap=True, overflow="crop", end="")


def blank_text(width: int, height: int, message: str = "", style: str = HINT_STYLE) -> Text:
    """`height` lines of `width` spaces, with an optional one-line message on the first line."""
    lines = Lines(max(0, width), max(0, height))
    lines.write(0, 0, message, style)
    return lines.to_text()


def truncate(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


# -- legend ---------------------------------------------------------------------------------------------------------
Placed = tuple[int, LegendEntry, str]  # (column, entry, label as shown); an entry of None swatch is a note


def layout_legend(entries: Sequence[LegendEntry], width: int, max_rows: int, first_row_start: int,
                  ) -> list[list[Placed]]:
    """Greedy rows of placed entries. When they do not all fit, a note says how many are left out ("+N" after,
    "…N" before) and the window slides so that the focused entry is always shown."""
    rows: list[list[Placed]] = [[] for _ in range(max(0, max_rows))]
    if max_rows <= 0 or not entries:
        return rows
    focus = next((i for i, e in enumerate(entries) if e.focused), None)
    start = 0
    while True:
        placed, shown_to = _layout_from(entries, start, width, max_rows, first_row_start)
        if focus is None or focus < shown_to or start >= focus:
            return placed
        start += 1


def _layout_from(entries: Sequence[LegendEntry], start: int, width: int, max_rows: int, first_row_start: int,
                 ) -> tuple[list[list[Placed]], int]:
    rows: list[list[Placed]] = [[] for _ in range(max_rows)]
    label_cap = max(6, width // 3)
    row, col = 0, first_row_start
    if start:
        note = f"…{start}"
        rows[0].append((col, None, note))
        col += len(note) + 2
    for index in range(start, len(entries)):
        entry = entries[index]
        text = truncate(entry.label, label_cap)
        needed = 2 + len(text)
        if col + needed > width and col > 0:
            row, col = row + 1, 0
        if row >= max_rows:
            _mark_hidden(rows[-1], len(entries) - index, width)
            return rows, index
        rows[row].append((col, entry, truncate(text, width - col - 2)))
        col += needed + 2
    return rows, len(entries)


def _mark_hidden(row: list, hidden: int, width: int) -> None:
    note = f"+{hidden}"
    while row and _end(row[-1]) + 2 + len(note) > width:
        if row[-1][1] is not None:
            hidden += 1
        note = f"+{hidden}"
        row.pop()
    col = _end(row[-1]) + 2 if row else 0
    row.append((col, None, note))


def _end(placed: Placed) -> int:
    col, entry, label = placed
    return col + (2 if entry is not None else 0) + len(label)


def legend_rows_needed(title: str, entries: Sequence[LegendEntry], width: int) -> int:
    text_len = len(title) + sum(len(e.label) + 4 for e in entries)
    return max(1 if (title or entries) else 0, math.ceil(text_len / max(1, width)))


def write_header(lines: Lines, heading: str, entries: Sequence[LegendEntry], header_rows: int, title: str) -> None:
    """The title (bold), the rest of the heading (grey), then the legend entries flowing after it."""
    if header_rows <= 0:
        return
    heading = truncate(heading, lines.width)
    col = lines.write(0, 0, heading[: len(title)], TITLE_STYLE)
    col = lines.write(0, col, heading[len(title):], TICK_STYLE)
    start = col + 2 if col else 0
    for row, items in enumerate(layout_legend(entries, lines.width, header_rows, start)):
        for item_col, entry, label in items:
            if entry is None:
                lines.write(row, item_col, label, TICK_STYLE)
                continue
            after = lines.write(row, item_col, entry.swatch, entry.color)
            style = FOCUS_STYLE if entry.focused else (HIDDEN_STYLE if entry.hidden else None)
            lines.write(row, after + 1, label, style)
