"""Decision boundaries (TF Playground, in the terminal): for runs on the 2-D sets (spiral, circles, xor, gaussians),
the latest `boundary` frame as a map of the predicted class over the input plane, with the training points over it;
several runs side by side, each titled by what differs between the shown runs (`experiments/playground.toml`:
hidden width x activation).

A map character is two grid cells stacked (▀: upper half in the foreground colour, lower half in the background),
so the 48 x 48 grid of a frame (experiments/metrics.py ARTIFACT_BOUNDARY: row 0 is the top, y = hi) is 48 x 24
characters at full size: square on a terminal whose cells are twice as tall as wide. Smaller maps sample it by the
nearest cell. Colour = predicted class (the colours `mxdash show` uses), darker = less sure (the softmax probability
of the predicted class, from chance level up). Points are the run's training inputs in their true class's colour.

Live: new frames re-render the maps (frames are read incrementally by the poller, tui/artifacts.py); ← / → step
through the recorded frames, every map at the same step; end returns to the newest. Built off the UI thread like
the plot views (tui/views/base.PlotView), whose render machinery this view shares (not its keys).
"""
from __future__ import annotations

import bisect
import math
from typing import Optional

import numpy as np
from rich.text import Span, Text
from textual.binding import Binding

from experiments.lesson_views import CLASS_COLOURS
from experiments.metrics import ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS
from tui.grouping import describe, flat_of, varying_keys
from tui.plot.canvas import style_runs
from tui.plot.text import TICK_STYLE, TITLE_STYLE, Lines, truncate
from tui.views.base import NO_RUNS_HINT, PlotView, RunData, ViewJob, hint

GAP = 2  # columns between maps
SHADES = 6  # confidence levels drawn (fewer distinct styles: cheaper to render, no visible banding)
NO_BOUNDARY_HINT = ("No decision boundaries for these runs: runs on the 2-D sets (spiral, circles, xor, gaussians) "
                    "record one every probe (try experiments/playground.toml in the Launch view, 6).")


def frame_at(frames: list, step: Optional[int]):
    """The newest frame at or before `step` (None: the newest of all); the first frame if all are later."""
    if not frames:
        return None
    if step is None:
        return frames[-1]
    index = bisect.bisect_right([frame.step for frame in frames], step) - 1
    return frames[max(index, 0)]


def layout(count: int, width: int, height: int, grid_w: int = 48, grid_h: int = 48) -> tuple[int, int, int]:
    """(maps per row, map columns, map rows) that make the maps largest: at most the grid's own size, square."""
    best = (1, 0, 0)
    for per_row in range(1, count + 1):
        lines = math.ceil(count / per_row)
        cols = (width - GAP * (per_row - 1)) // per_row
        rows = height // lines - 1  # a title line per map
        size = min(cols, grid_w, 2 * rows * grid_w // grid_h)
        if size > best[1]:
            best = (per_row, size, max(1, (size * grid_h // grid_w + 1) // 2))
    return best


def _rgb(colour: tuple, factor: float) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c * factor) for c in colour))


def shade_table(classes: int) -> list[str]:
    """Style strings per (class, shade level): the class colour at 30% (chance) to 100% (sure) brightness."""
    return [_rgb(CLASS_COLOURS[c % len(CLASS_COLOURS)], 0.3 + 0.7 * level / (SHADES - 1))
            for c in range(classes) for level in range(SHADES)]


def pixel_codes(payload: dict, cols: int, rows: int) -> np.ndarray:
    """(2 * rows, cols) colour codes (class * SHADES + shade level) by nearest grid cell."""
    pred, confidence, classes = payload["pred"], payload["confidence"], int(payload["classes"])
    grid_h, grid_w = pred.shape
    r = np.arange(2 * rows) * grid_h // (2 * rows)
    c = np.arange(cols) * grid_w // cols
    chance = 100.0 / max(classes, 2)
    sure = np.clip((confidence[np.ix_(r, c)] - chance) / (100.0 - chance), 0.0, 1.0)
    levels = np.rint(sure * (SHADES - 1)).astype(np.int64)
    return pred[np.ix_(r, c)].astype(np.int64) * SHADES + levels


def point_cells(points: Optional[dict], payload: dict, cols: int, rows: int) -> dict[tuple[int, int], tuple]:
    """(line, col) -> (true class, upper half?) of a thinned sample of the training points (at most one per four
    characters, so the map shows between them)."""
    if not points or not len(points["labels"]):
        return {}
    (x_lo, x_hi), (y_lo, y_hi) = payload["x"], payload["y"]
    xy, labels = points["points"], points["labels"]
    stride = max(1, math.ceil(len(labels) / max(1, cols * rows // 4)))
    xy, labels = xy[::stride], labels[::stride]
    col = np.floor((xy[:, 0] - x_lo) / (x_hi - x_lo) * cols).astype(np.int64)
    pixel_row = np.floor((y_hi - xy[:, 1]) / (y_hi - y_lo) * 2 * rows).astype(np.int64)
    inside = (col >= 0) & (col < cols) & (pixel_row >= 0) & (pixel_row < 2 * rows)
    return {(int(pr) // 2, int(c)): (int(label), int(pr) % 2 == 0)
            for c, pr, label in zip(col[inside], pixel_row[inside], labels[inside])}


def render_map(payload: dict, points: Optional[dict], cols: int, rows: int) -> list[Text]:
    """`rows` lines of `cols` half-block characters (see the module docstring)."""
    codes = pixel_codes(payload, cols, rows)
    styles = shade_table(int(payload["classes"]))
    dots = point_cells(points, payload, cols, rows)
    out = []
    for line in range(rows):
        top, bottom = codes[2 * line], codes[2 * line + 1]
        pair = top * len(styles) + bottom
        chars = ["▀"] * cols
        spans = []
        for start, end, code in zip(*style_runs(pair)):
            spans.append(Span(int(start), int(end), f"{styles[code // len(styles)]} on {styles[code % len(styles)]}"))
        for (r, c), (label, upper) in dots.items():
            if r == line:
                chars[c] = "•"
                tint = tuple((v + 255) // 2 for v in CLASS_COLOURS[label % len(CLASS_COLOURS)])
                under = top[c] if upper else bottom[c]
                spans.append(Span(c, c + 1, f"bold {_rgb(tint, 1.0)} on {styles[under]}"))
        out.append(Text("".join(chars), spans=spans, no_wrap=True, overflow="crop", end=""))
    return out


def map_title(label: str, run: RunData, frame, width: int) -> Text:
    """`hidden=2 relu · step 300 · acc 47.0%`, shortened to fit a narrow map so that the accuracy stays: without the
    step, then `hidden=2 relu 47%`, then `h=2 relu 47%`, then the accuracy first."""
    acc = run.row.get("val_acc")
    if not isinstance(acc, float):
        return _title_text(truncate(f"{label} · step {frame.step}", width))
    candidates = (f"{label} · step {frame.step} · acc {100 * acc:.1f}%", f"{label} · acc {100 * acc:.1f}%",
                  f"{label} {100 * acc:.0f}%", f"{short_label(label)} {100 * acc:.0f}%")
    text = next((c for c in candidates if len(c) <= width), truncate(f"{100 * acc:.0f}% {short_label(label)}", width))
    return _title_text(text)


def short_label(label: str) -> str:
    """`hidden=2 relu` -> `h=2 relu`: each `key=value` by the key's first letter."""
    return " ".join(f"{part.split('=', 1)[0][:1]}={part.split('=', 1)[1]}" if "=" in part else part
                    for part in label.split())


def _title_text(text: str) -> Text:
    return Text(text, style=TITLE_STYLE, no_wrap=True, overflow="crop", end="")


def build_boundaries(job: ViewJob) -> Text:
    width, height, opts = job.width, job.height, job.options
    if not job.units:
        return hint(width, height, NO_RUNS_HINT)
    mapped = [run for unit in job.units if not unit.hidden for run in unit.runs if run.artifacts.get(ARTIFACT_BOUNDARY)]
    if not mapped:
        return hint(width, height, NO_BOUNDARY_HINT)
    flats = [flat_of(run.row) for run in mapped]
    naming = varying_keys(flats)  # what differs between the mapped runs (not every plotted run)
    maps = []
    for run, flat in zip(mapped, flats):
        frame = frame_at(run.artifacts[ARTIFACT_BOUNDARY], opts["step"])
        points = run.artifacts.get(ARTIFACT_BOUNDARY_POINTS)
        maps.append((describe(flat, naming) or run.id, run, frame,
                     points[-1].payload if points and opts["points"] else None))
    grid_h, grid_w = maps[0][2].payload["pred"].shape
    header = _header(maps, opts, width, job.title)
    per_row, cols, rows = layout(len(maps), width, height - 1, grid_w, grid_h)
    lines = Lines(width, height)
    _blit(lines, 0, 0, header)
    shown = (height - 1) // (rows + 1) * per_row
    for index, (label, run, frame, points) in enumerate(maps[:shown]):
        top = 1 + (index // per_row) * (rows + 1)
        left = (index % per_row) * (cols + GAP)
        title = map_title(label, run, frame, cols)
        _blit(lines, top, left, title)
        for offset, text in enumerate(render_map(frame.payload, points, cols, rows)):
            _blit(lines, top + 1 + offset, left, text)
    if len(maps) > shown:
        note = f"+{len(maps) - shown} more: select fewer runs (space in Runs) to see them"
        lines.write(height - 1, 0, truncate(note, width), TICK_STYLE)
    return lines.to_text()


def _blit(lines: Lines, row: int, col: int, text: Text) -> None:
    if not 0 <= row < lines.height:
        return
    plain = text.plain[: max(0, lines.width - col)]
    lines.rows[row][col: col + len(plain)] = list(plain)
    lines.spans[row].extend((col + s.start, col + min(s.end, len(plain)), str(s.style)) for s in text.spans
                            if s.start < len(plain))


def _header(maps: list, opts: dict, width: int, title: str) -> Text:
    """`decision boundaries · live  ■ 0 ■ 1 ■ 2  darker = less sure · • training points · 6 runs selected`, the
    least needed part last (a narrow terminal crops it)."""
    classes = max(int(frame.payload["classes"]) for _, _, frame, _ in maps)
    text = Text(no_wrap=True, overflow="crop", end="")
    text.append("decision boundaries", style=TITLE_STYLE)
    text.append(" · live  " if opts["step"] is None else f" · step {opts['step']} (end: live)  ", style=TICK_STYLE)
    for c in range(classes):
        text.append("■", style=_rgb(CLASS_COLOURS[c % len(CLASS_COLOURS)], 1.0))
        text.append(f" {c} ", style=TICK_STYLE)
    text.append(" darker = less sure", style=TICK_STYLE)
    if opts["points"]:
        text.append(" · • training points", style=TICK_STYLE)
    if title:
        text.append(f" · {title}", style=TICK_STYLE)
    return text


class BoundaryView(PlotView, inherit_bindings=False):
    """Decision-boundary maps of the plotted runs on 2-D data."""

    BINDINGS = [
        Binding("left", "frame(-1)", "Older frame", key_display="←→"),
        Binding("right", "frame(1)", "Newer frame", show=False),
        Binding("shift+left", "frame(-10)", "10 frames older", show=False),
        Binding("shift+right", "frame(10)", "10 frames newer", show=False),
        Binding("end", "live", "Live (newest frame)"),
        Binding("p", "toggle_points", "Training points"),
    ]
    ARTIFACT_KEYS = (ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step: Optional[int] = None  # None: live (each map's newest frame)
        self.points = True

    def options(self) -> dict:
        return {"step": self.step, "points": self.points}

    def build(self, job: ViewJob) -> Text:
        return build_boundaries(job)

    def frame_steps(self) -> list[int]:
        """Every recorded frame step of the shown runs (UI thread: a few hundred ints)."""
        steps: set[int] = set()
        if self.model is not None:
            for rid in self.run_ids:
                log = self.model.artifacts.get(rid, {}).get(ARTIFACT_BOUNDARY)
                if log is not None:
                    steps.update(frame.step for frame in log.items)
        return sorted(steps)

    def action_frame(self, delta: int) -> None:
        steps = self.frame_steps()
        if not steps:
            return
        current = len(steps) - 1 if self.step is None else max(0, bisect.bisect_right(steps, self.step) - 1)
        index = min(max(current + delta, 0), len(steps) - 1)
        self.step = None if index == len(steps) - 1 and delta > 0 else steps[index]
        self.options_changed()

    def action_live(self) -> None:
        self.step = None
        self.options_changed()

    def action_toggle_points(self) -> None:
        self.points = not self.points
        self.options_changed()
