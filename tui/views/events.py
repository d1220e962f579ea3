"""Events on the plots (experiments/annotations.py: "diverged at step 10", "hidden0 passed 40% dead at step 40",
"best LR 0.01 (adam)", "val loss rising since epoch 7 (overfitting)"): detected from what a view's render job holds,
in the render thread, and listed under the plot (`events_row`) next to the markers the views draw for them.

Pure functions (numpy in, Rich Text out): no Textual.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rich.text import Text

from experiments.annotations import Annotation, dead_relu, diverged, overfitting
from experiments.metrics import TRAIN_LOSS, VAL_LOSS, is_dead_key
from tui.plot import color_of
from tui.plot.text import TICK_STYLE, Lines, truncate

EVENT_MARK = "◆"  # the marker of an event at its point (× stays the mark of a divergence)
EVENT_STYLES = {"diverged": "dark_orange", "dead_relu": "magenta", "overfitting": "yellow", "best_lr": "green"}


@dataclass
class Event:
    """An annotation of one run, with what the legend calls that run and its colour."""
    annotation: Annotation
    label: str
    color: object
    char: str = EVENT_MARK


def as_tuples(arrays: dict | None) -> list[tuple]:
    """A job's series ({step, epoch, value} arrays) as the detectors' [(step, epoch, value)]; NaN stays NaN (the
    detectors skip non-finite values). `.tolist()` runs in C: 100k points in a few ms."""
    if not arrays:
        return []
    return list(zip(arrays["step"].astype(np.int64).tolist(), arrays["epoch"].tolist(), arrays["value"].tolist()))


_CACHE: dict[tuple, list[Annotation]] = {}  # detections by what they read: a render redoes only changed runs
CACHE_SIZE = 2048


def _signature(run, keys) -> tuple:
    parts = [run.id, run.row.get("diverged_step"), run.row.get("status")]
    for key in keys:
        arrays = run.series.get(key)
        parts.append((key, len(arrays["step"]), float(arrays["step"][-1])) if arrays and len(arrays["step"]) else key)
    return tuple(parts)


def _cached(kind: str, run, keys, detect) -> list[Annotation]:
    key = (kind,) + _signature(run, keys)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= CACHE_SIZE:
            _CACHE.clear()
        found = _CACHE[key] = detect()
    return found


def loss_events(run, label: str, color) -> list[Event]:
    """Divergence and overfitting of one run (the Curves view)."""
    keys = (TRAIN_LOSS, VAL_LOSS)
    found = _cached("loss", run, keys, lambda: overfitting({key: as_tuples(run.series.get(key)) for key in keys}))
    return [Event(a, label, color, "×") for a in diverged(run.row)] + [Event(a, label, color) for a in found]


def dead_events(run, label: str, color) -> list[Event]:
    """Each layer's first probe past 40% dead (the Dead ReLUs view)."""
    keys = sorted(key for key in run.series if is_dead_key(key))
    found = _cached("dead", run, keys, lambda: dead_relu({key: as_tuples(run.series[key]) for key in keys}))
    return [Event(a, label, color) for a in found]


def events_row(events: Sequence[Event], width: int, rows: int = 1, with_labels: bool = True) -> Text:
    """`◆ adam lr=0.1: val loss rising since epoch 7 (overfitting)   × sgd lr=10: diverged at step 3   +4 more`:
    as many events as fit `rows` lines, then how many were left out."""
    placed: list[tuple[int, int, Event, str]] = []  # (row, col, event, text)
    row, col = 0, 0
    for event in events:
        text = (f"{truncate(event.label, max(8, width // 4))}: " if with_labels and event.label else "") + \
            event.annotation.text
        text = truncate(text, width - 2)
        if col + 2 + len(text) > width and col > 0:
            row, col = row + 1, 0
        if row >= rows:
            break
        placed.append((row, col, event, text))
        col += 2 + len(text) + 3
    left = len(events) - len(placed)
    while left and placed and placed[-1][0] == rows - 1 and \
            placed[-1][1] + 2 + len(placed[-1][3]) + 3 + len(f"+{left} more") > width:
        placed.pop()  # make room for the note on the last line
        left += 1
    lines = Lines(width, rows)
    end = 0
    for index, (row, col, event, text) in enumerate(placed):
        lines.write(row, col, event.char, f"bold {color_of(event.color, index)}")
        end = lines.write(row, col + 2, text, EVENT_STYLES.get(event.annotation.kind)) + 3
    if left:
        last = [p for p in placed if p[0] == rows - 1]
        lines.write(rows - 1, end if last else 0, f"+{left} more", TICK_STYLE)
    return lines.to_text()


def event_rows(height: int, count: int) -> int:
    """Rows the events list may take under a chart of `height` rows: none on a short one, up to 3 on a tall one."""
    if not count or height < 14:
        return 0
    return min(count, 1 if height < 30 else 2 if height < 44 else 3)


def rows_needed(events: Sequence[Event], width: int, most: int) -> int:
    """How many of `most` rows the list fills (each event takes its text plus 5 cells)."""
    if not events or most <= 0:
        return 0
    total = sum(len(event.label) + len(event.annotation.text) + 7 for event in events)
    return max(1, min(most, -(-total // max(1, width))))


def events_height(events: Sequence[Event], height: int, width: int, labels: bool = True) -> int:
    """Rows to give the events list under a chart in a view `height` rows tall."""
    shown = events if labels else [Event(e.annotation, "", e.color, e.char) for e in events]
    return rows_needed(shown, width, event_rows(height, len(events)))
