"""The crosshair readout the plot views share (Curves, Dead ReLUs): what every shown line reads at the crosshair,
`step 420 │ ━ adam lr=0.01 0.0587  ━ sgd lr=0.1 0.43 …`, each behind a ━ in its line's colour, wrapping over the
rows it is given and ending in ` +N` when not all fit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from rich.text import Text

from tui.plot import color_of, truncate
from tui.plot.text import TICK_STYLE, Lines


@dataclass
class Reading:
    """One entry of a crosshair readout: a ━ in the line's colour, its label, what it reads there."""
    label: str
    color: int
    value: str
    focused: bool = False


def _readout_places(where: str, readings: Sequence[Reading], width: int, label_width: Optional[int] = None,
                    ) -> tuple[int, list[tuple[int, int, str]]]:
    """(first column after `where │`, (row, column, text) of each reading): readings flow left to right and wrap.
    Labels are cut to `label_width` (default a third of the width: several readings share a line)."""
    limit = max(8, width // 3) if label_width is None else label_width
    start = min(width, len(f"{where} │")) + 1
    col, row, places = start, 0, []
    for reading in readings:
        text = f"{truncate(reading.label, limit)} {reading.value}"
        if col + len(text) + 2 > width and col > 0:
            row, col = row + 1, 0
        places.append((row, col, text))
        col = min(width, min(width, col + 1) + 1 + len(text)) + 2  # the ━, a space, the text, two spaces
    return start, places


def readout_height(where: str, readings: Sequence[Reading], width: int, label_width: Optional[int] = None) -> int:
    """Rows the readout needs to show every reading."""
    places = _readout_places(where, readings, width, label_width)[1]
    return places[-1][0] + 1 if places else 1


def crosshair_readout(where: str, readings: Sequence[Reading], width: int, rows: int,
                      label_width: Optional[int] = None) -> Text:
    """`step 420 │ ━ adam lr=0.01 0.0587  ━ sgd lr=0.1 0.43 …` in `rows` lines; ` +N` says how many did not fit.
    Shared by the plot views, so that a crosshair reads the same way in each."""
    lines = Lines(width, rows)
    lines.write(0, 0, f"{where} │", TICK_STYLE)
    for index, (row, col, text) in enumerate(_readout_places(where, readings, width, label_width)[1]):
        if row >= rows:
            lines.write(rows - 1, max(0, width - 6), f" +{len(readings) - index}", TICK_STYLE)
            break
        reading = readings[index]
        col = lines.write(row, col, "━", color_of(reading.color, 0)) + 1
        lines.write(row, col, text, "reverse" if reading.focused else None)
    return lines.to_text()


__all__ = ["Reading", "crosshair_readout", "readout_height"]
