"""Curves: training loss (smoothed over faint raw points) and dashed validation loss per run or seed group, and
validation accuracy below, on a step, epoch or wall-time axis.

The loss axis fits the readable part of the curves (`robust_top`: diverged runs at 1e10 would otherwise flatten
every other curve on 0); diverged runs leave through the top edge and get a × where they diverged; `f` shows the
full range. A crosshair (left/right) reads every shown run's value at one step; `[` / `]` zoom in and out. Events
(experiments/annotations.py: divergence, overfitting) are marked where they happened (×, ◆) and listed under the loss.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from rich.text import Text
from textual.binding import Binding

from experiments.metrics import TRAIN_LOSS, VAL_ACC, VAL_LOSS
from tui.plot import (Band, LegendEntry, Marker, PlotSeries, aggregate, color_of, finite_part, render_chart,
                      robust_top, smooth_for_display, value_at)
from tui.plot.text import Lines
from tui.views.base import (NO_RUNS_HINT, PlotView, UnitData, ViewJob, chance_loss, crosshair_x, format_reading,
                            hint, is_diverged, split_height, stack, zoomed)
from tui.views.readout import Reading, crosshair_readout
from tui.views.events import EVENT_MARK, Event, events_height, events_row, loss_events

SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)  # `m` cycles through these; 0 = raw only
X_AXES = ("step", "epoch", "wall")
STACKED_GUTTER = 6  # y-label column of stacked charts: "0.25┤" fits, so their x columns usually line up


class Curve:
    """What one unit draws: its (smoothed or mean) line, the band of a seed group, faint raw points."""

    def __init__(self) -> None:
        self.series: list[PlotSeries] = []
        self.bands: list[Band] = []
        self.main: Optional[tuple[np.ndarray, np.ndarray]] = None  # the line the crosshair reads


def wall_scale(job: ViewJob) -> tuple[float, str]:
    """The unit (s, min or h) that suits the longest run. `wall` is stored as seconds since the run started."""
    longest = 0.0
    for unit in job.units:
        for run in unit.runs:
            for arrays in run.series.values():
                if len(arrays["wall"]):
                    longest = max(longest, float(np.nanmax(arrays["wall"])))
    if longest > 2 * 3600:
        return 3600.0, "h"
    if longest > 120:
        return 60.0, "min"
    return 1.0, "s"


def x_values(arrays: dict, axis: str, scale: float) -> np.ndarray:
    return arrays["wall"] / scale if axis == "wall" else arrays[axis]


def _smoothed(x: np.ndarray, y: np.ndarray, smoothing: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    if smoothing > 0:
        return smooth_for_display(x, y, smoothing, n_points)
    fx, fy, _ = finite_part(x, y)
    return fx, fy


def _unit_curve(unit: UnitData, key: str, axis: str, scale: float, smoothing: float, n_points: int,
                style: str = "line", raw: bool = True) -> Curve:
    curve = Curve()
    color = unit.color
    lines = []
    for run in unit.runs:
        arrays = run.series.get(key)
        if arrays is None:
            continue
        x, y = x_values(arrays, axis, scale), arrays["value"]
        lines.append(_smoothed(x, y, smoothing, n_points))
        if raw and smoothing > 0 and not unit.aggregated:
            curve.series.append(PlotSeries(x, y, color=color, faint=True, legend=False, mark_divergence=False))
    if not lines:
        return curve
    if unit.aggregated:
        gx, mean, lo, hi = aggregate(lines, n_points)
        curve.bands.append(Band(gx, lo, hi, color))
        curve.main = (gx, mean)
    else:
        curve.main = lines[0]
    curve.series.append(PlotSeries(*curve.main, label=unit.label, color=color, style=style, legend=False,
                                   mark_divergence=False, emphasis=unit.focused))
    return curve


def divergence_markers(unit: UnitData, axis: str, scale: float) -> list[Marker]:
    """A × at the top edge where each diverged run of the unit diverged (its diverged step, else where its loss
    turned NaN, else its last point)."""
    markers = []
    for run in unit.runs:
        arrays = run.series.get(TRAIN_LOSS)
        if arrays is None or not len(arrays["step"]):
            continue
        x = x_values(arrays, axis, scale)
        _, fy, nan_from = finite_part(x, arrays["value"])
        if not (is_diverged(run.row) or nan_from is not None):
            continue
        step = run.row.get("diverged_step")
        if step is not None:
            index = min(int(np.searchsorted(arrays["step"], step)), len(x) - 1)
            where = float(step) if axis == "step" else float(x[index])
        else:
            where = nan_from if nan_from is not None else float(x[-1])
        markers.append(Marker(where, math.inf, "×", unit.color))
    return markers


def event_markers(unit: UnitData, events: list[Event], axis: str, scale: float) -> list[Marker]:
    """A ◆ on the validation curve where an overfitting run's val loss was lowest (×: divergence_markers)."""
    markers = []
    for event in events:
        step = event.annotation.step
        if event.char != EVENT_MARK or step is None:
            continue
        for run in unit.runs:
            arrays = run.series.get(VAL_LOSS)
            if arrays is None or not len(arrays["step"]):
                continue
            at = int(np.searchsorted(arrays["step"], step))
            if at < len(arrays["step"]) and arrays["step"][at] == step:
                x = float(x_values(arrays, axis, scale)[at])
                markers.append(Marker(x, float(arrays["value"][at]), EVENT_MARK, unit.color))
                break
    return markers


def build_curves(job: ViewJob) -> Text:
    width, height, opts = job.width, job.height, job.options
    units = job.units
    if not units:
        return hint(width, height, NO_RUNS_HINT)
    if not any(TRAIN_LOSS in r.series or VAL_LOSS in r.series for u in units for r in u.runs):
        return hint(width, height, "No loss points yet for these runs (queued, or still on the first logging "
                                   "interval).")
    axis, smoothing, log_y, full = opts["x"], opts["smoothing"], opts["log_y"], opts["full_range"]
    readout_rows = 0 if job.crosshair is None else (3 if height >= 30 else 2 if height >= 16 else 1)
    shown = [u for u in units if not u.hidden]
    unit_events = {unit.id: [e for run in unit.runs for e in loss_events(run, unit.label, unit.color)]
                   for unit in shown}
    events = [event for found in unit_events.values() for event in found]
    events_h = events_height(events, height, width)
    has_acc = any(VAL_ACC in r.series for u in units for r in u.runs)
    rest = height - readout_rows - events_h
    loss_h, acc_h = split_height(rest, 0.66, 6) if has_acc else (rest, 0)
    scale, unit_name = wall_scale(job) if axis == "wall" else (1.0, "")
    x_label = f"wall ({unit_name})" if axis == "wall" else axis
    n_points = 4 * width  # two samples per braille pixel column

    series, bands, markers, readable, everything, mains = [], [], [], [], [], []
    for unit in shown:
        train = _unit_curve(unit, TRAIN_LOSS, axis, scale, smoothing, n_points)
        val = _unit_curve(unit, VAL_LOSS, axis, scale, 0.0, n_points, style="dashed", raw=False)
        series += train.series + val.series
        bands += train.bands
        markers += divergence_markers(unit, axis, scale)
        markers += event_markers(unit, unit_events[unit.id], axis, scale)
        mains.append((unit, train.main))
        values = [s.y for s in train.series + val.series if not s.faint] + [b.hi for b in train.bands]
        everything += values
        if not any(is_diverged(run.row) for run in unit.runs):
            readable += values
    full_x = _x_extent(series, bands)
    if axis == "wall" and full_x is not None:
        full_x = (0.0, full_x[1])  # seconds since each run started: the axis starts where the runs did
    shown_x = zoomed(full_x, job.zoom)
    vline = crosshair_x(shown_x, job.crosshair)
    y_range = None if full else _robust_range(readable or everything, chance_loss(units), log_y)
    entries = [LegendEntry("━", color_of(u.color, 0), u.label, u.focused, u.hidden) for u in units]
    if any(VAL_LOSS in r.series for u in shown for r in u.runs):
        entries.append(LegendEntry("╍", "grey70", "val"))
    if any(m.char == "×" for m in markers):
        entries.append(LegendEntry("×", "bold", "diverged"))
    if any(m.char == EVENT_MARK for m in markers):
        entries.append(LegendEntry(EVENT_MARK, "bold", "val loss lowest, then rising"))
    mode = [x_label, "log y" if log_y else "", f"ema {smoothing:g}" if smoothing > 0 else "raw",
            "full y" if full else "", "zoom" if job.zoom != (0.0, 1.0) else ""]
    title = "loss · " + (f"{job.title} · " if job.title else "") + " · ".join(m for m in mode if m)
    parts = [render_chart(series, width, loss_h, title=title, x_label=x_label, log_y=log_y, y_range=y_range,
                          x_range=shown_x, markers=markers, bands=bands, legend=entries, vline=vline,
                          min_gutter=STACKED_GUTTER)]
    if readout_rows:
        parts.append(readout(mains, vline, axis, width, readout_rows, job.note))
    if events_h:
        parts.append(events_row(events, width, events_h))
    if acc_h:
        acc = []
        for unit in shown:
            curve = _unit_curve(unit, VAL_ACC, axis, scale, 0.0, n_points, raw=False)
            acc += curve.series
        parts.append(render_chart(acc, width, acc_h, title="val accuracy", x_label=x_label, x_range=shown_x,
                                  legend=False, vline=vline, min_gutter=STACKED_GUTTER))
    elif job.note and not readout_rows:
        parts.append(hint(width, 1, job.note))
    return stack(parts, width, height)


def _x_extent(series: list[PlotSeries], bands: list[Band]) -> Optional[tuple[float, float]]:
    """Common x range of the stacked charts, so that a column means the same step in each."""
    ends = [s.x[[0, -1]] for s in series if len(s.x)] + [b.x[[0, -1]] for b in bands if len(b.x)]
    if not ends:
        return None
    ends = np.concatenate(ends)
    ends = ends[np.isfinite(ends)]
    return (float(ends.min()), float(ends.max())) if ends.size and ends.max() > ends.min() else None


def _robust_range(values: list[np.ndarray], chance: Optional[float], log_y: bool,
                  ) -> Optional[tuple[float, float]]:
    top = robust_top(values, chance)
    finite = [v[np.isfinite(v)] for v in values if len(v)]
    finite = [v[v > 0] if log_y else v for v in finite]
    finite = [v for v in finite if v.size]
    if top is None or not finite:
        return None
    low = min(float(v.min()) for v in finite)
    if top <= low:
        return None
    return low, top + 0.02 * (top - low)


def readout(mains: list, x: Optional[float], axis: str, width: int, rows: int, note: str = "") -> Text:
    """The crosshair readout: `step 420 │ ━ adam lr=0.01 0.0587  ━ sgd lr=0.1 0.43 …`, lowest value first."""
    if x is None:
        return Lines(width, rows).to_text()
    readings = []
    for unit, main in mains:
        value = value_at(*main, x) if main is not None else None
        readings.append((math.inf if value is None else value, unit, value))
    readings.sort(key=lambda item: item[0])
    where = f"{x:.0f}" if axis == "step" else f"{x:.4g}"
    return crosshair_readout(f"{axis} {where}", [Reading(unit.label, unit.color, format_reading(value), unit.focused)
                                                 for _, unit, value in readings], width, rows)


class CurvesView(PlotView):
    """Loss and accuracy curves of the plotted runs."""

    BINDINGS = [
        Binding("x", "cycle_x", "X axis"),
        Binding("l", "toggle_log_y", "Log y"),
        Binding("m", "cycle_smoothing", "Smoothing"),
        Binding("f", "toggle_full_range", "Full y range"),
    ]
    METRIC_KEYS = (TRAIN_LOSS, VAL_LOSS, VAL_ACC)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.x_axis = "step"
        self.log_y = False
        self.smoothing = 0.6  # TensorBoard's default
        self.full_range = False

    def options(self) -> dict:
        return {"x": self.x_axis, "log_y": self.log_y, "smoothing": self.smoothing, "full_range": self.full_range}

    def build(self, job: ViewJob) -> Text:
        return build_curves(job)

    def action_cycle_x(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]
        self.zoom, self.crosshair = (0.0, 1.0), None  # another axis: the zoomed range means nothing there
        self.options_changed()

    def action_toggle_log_y(self) -> None:
        self.log_y = not self.log_y
        self.options_changed()

    def action_cycle_smoothing(self) -> None:
        index = SMOOTHING_STEPS.index(self.smoothing) if self.smoothing in SMOOTHING_STEPS else 0
        self.smoothing = SMOOTHING_STEPS[(index + 1) % len(SMOOTHING_STEPS)]
        self.options_changed()

    def action_toggle_full_range(self) -> None:
        self.full_range = not self.full_range
        self.options_changed()
