"""LR effects: best (solid) and final (dashed) metric against the learning rate, one line per optimizer (more
exactly: per combination of everything that differs except the LR and the seeds); above it, when LR range tests are
among the shown runs, their smoothed loss against the LR with each optimizer's suggestion marked (tui/views/lr_range,
where `w` plans the sweep around the suggestions); under both, the events ("best LR 0.01 (adam)").

Runs with the same line and LR (several seeds, or two sweeps of one grid) are aggregated: the line goes through
their mean, a band spans their min-max. Every measured LR has a marker; each line's best LR is labelled with its
value; diverged runs are × markers at the top, one row per line, so none hides another. The applied-LR plot below
appears only when some run's learning rate changed during training (a schedule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from experiments.annotations import BEST_LR, Annotation, format_lr
from experiments.metrics import ARTIFACT_LR_SUGGESTION, LR
from tui.grouping import describe, flat_of, format_value, is_seed_key, varying_keys
from tui.plot import Band, LegendEntry, Marker, PlotSeries, color_of, finite_part, render_chart, robust_top
from tui.plot.text import Lines, TICK_STYLE, truncate
from tui.views.base import (NO_RUNS_HINT, PlotView, ViewJob, chance_loss, crosshair_x, format_reading, hint,
                            is_diverged, split_height, stack, zoomed)
from tui.views.events import Event, events_height, events_row
from tui.views.lr_range import (RANGE_TEST_KEYS, is_range_test, range_chart, range_curves, range_readout,
                                range_x_extent, suggestion_events)

LR_METRICS = ("val loss", "train loss", "val acc")
METRIC_FIELDS = {"val loss": ("best_val_loss", "val_loss"), "train loss": (None, "train_loss"),
                 "val acc": ("best_val_acc", "val_acc")}
LR_KEY = "optimizer.lr"
NEUTRAL = "grey62"  # a line whose points have different colours (the colour key is the LR itself)


@dataclass
class LrLine:
    """One line of the chart: the runs that differ only by LR (and seeds)."""
    label: str
    color: object  # palette index, or NEUTRAL
    lrs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best: np.ndarray = field(default_factory=lambda: np.zeros(0))  # mean per LR
    final: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lo: np.ndarray = field(default_factory=lambda: np.zeros(0))  # min per LR (of the solid metric)
    hi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    point_colors: list = field(default_factory=list)  # per LR: the colour of its runs
    diverged: list[tuple[float, object]] = field(default_factory=list)  # (lr, colour)
    focused: bool = False

    def solid(self) -> np.ndarray:
        return self.best if np.isfinite(self.best).any() else self.final


def lr_lines(job: ViewJob, metric: str) -> list[LrLine]:
    best_key, final_key = METRIC_FIELDS[metric]
    runs = [(unit, run) for unit in job.units if not unit.hidden for run in unit.runs if not is_range_test(run.row)]
    flats = [flat_of(run.row) for _, run in runs]
    naming = [k for k in varying_keys(flats) if k != LR_KEY and not is_seed_key(k)]
    grouped: dict[str, dict] = {}
    for (unit, run), flat in zip(runs, flats):
        lr = run.row.get("lr")
        if not isinstance(lr, (int, float)) or not lr > 0:
            continue
        name = describe(flat, naming) or "all runs"
        line = grouped.setdefault(name, {"colors": set(), "points": {}, "diverged": [], "focused": False})
        line["colors"].add(unit.color)
        line["focused"] |= unit.focused
        if is_diverged(run.row):
            line["diverged"].append((float(lr), unit.color))
            continue
        best = run.row.get(best_key) if best_key else None
        final = run.row.get(final_key)
        if best is None and final is None:
            continue  # not measured yet
        point = line["points"].setdefault(float(lr), {"best": [], "final": [], "color": unit.color})
        point["best"].append(math.nan if best is None else float(best))
        point["final"].append(math.nan if final is None else float(final))
    lines = []
    for name, line in grouped.items():
        color = next(iter(line["colors"])) if len(line["colors"]) == 1 else NEUTRAL
        result = LrLine(name, color, focused=line["focused"])
        lrs = sorted(line["points"])
        points = [line["points"][lr] for lr in lrs]
        best = [np.array(p["best"]) for p in points]
        final = [np.array(p["final"]) for p in points]
        solid = best if any(np.isfinite(b).any() for b in best) else final
        result.lrs = np.array(lrs, dtype=np.float64)
        result.best = np.array([_mean(b) for b in best])
        result.final = np.array([_mean(f) for f in final])
        result.lo = np.array([_extreme(s, np.nanmin) for s in solid])
        result.hi = np.array([_extreme(s, np.nanmax) for s in solid])
        result.counts = np.array([int(np.isfinite(s).sum()) for s in solid])
        result.point_colors = [p["color"] for p in points]
        result.diverged = line["diverged"]
        lines.append(result)
    return lines


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _extreme(values: np.ndarray, reduce) -> float:
    finite = values[np.isfinite(values)]
    return float(reduce(finite)) if finite.size else math.nan


def schedule_varies(job: ViewJob) -> bool:
    """True when some shown run's applied LR changed during training (warmup, decay, cosine...)."""
    for unit in job.units:
        for run in unit.runs:
            arrays = run.series.get(LR)
            if arrays is None:
                continue
            _, values, _ = finite_part(arrays["step"], arrays["value"])
            if values.size > 1 and values.max() > values.min() * (1 + 1e-9):
                return True
    return False


def build_lr(job: ViewJob) -> Text:
    width, height, opts = job.width, job.height, job.options
    if not job.units:
        return hint(width, height, NO_RUNS_HINT)
    metric = opts["metric"]
    lines = lr_lines(job, metric)
    curves = [curve for curve in range_curves(job) if curve.lr.size]
    distinct = {float(lr) for line in lines for lr in line.lrs} | {lr for line in lines for lr, _ in line.diverged}
    sweep = len(distinct) >= 2
    if not sweep and not curves:
        return hint(width, height, "No LR axis: these runs share one learning rate (filter or select an LR sweep, or "
                                   "run an LR range test: ctrl+t in the Launch view).")
    events = suggestion_events(curves) + (best_lr_events(lines, metric) if sweep else [])
    events_h = events_height(events, height, width, labels=False)
    readout_rows = 0 if job.crosshair is None else (2 if height >= 16 else 1)
    body = height - events_h
    range_h, sweep_h = (split_height(body, 0.55, 8) if curves and sweep else (body, 0) if curves else (0, body))
    parts = []
    if range_h:
        full_x = range_x_extent(curves)
        shown_x = zoomed(full_x, job.zoom, log=True)
        cursor = crosshair_x(shown_x, job.crosshair, log=True)
        rows = readout_rows if not sweep_h else 0
        title = job.title + (" · w: sweep around the suggestions" if any(c.suggested for c in curves) else "")
        parts.append(range_chart(curves, width, range_h - rows, opts["log_y"], opts["full_range"], title, shown_x,
                                 cursor))
        if rows:
            parts.append(range_readout(curves, cursor, width, rows))
    if sweep_h:
        parts.append(_sweep_part(job, lines, distinct, metric, width, sweep_h, readout_rows))
    if events_h:
        parts.append(events_row(events, width, events_h, with_labels=False))
    return stack(parts, width, height)


def _sweep_part(job: ViewJob, lines: list[LrLine], distinct: set[float], metric: str, width: int, height: int,
                readout_rows: int) -> Text:
    opts = job.options
    schedule = schedule_varies(job)
    top_h, schedule_h = split_height(height - readout_rows, 0.6, 6) if schedule else (height - readout_rows, 0)
    full_x = (min(distinct), max(distinct))
    shown_x = zoomed(full_x, job.zoom, log=True)
    cursor = _snap(crosshair_x(shown_x, job.crosshair, log=True), distinct)
    chance = chance_loss(job.units) if metric != "val acc" else None
    parts = [_lr_chart(lines, metric, width, top_h, opts["log_y"], opts["full_range"], job.title, shown_x, cursor,
                       chance)]
    if readout_rows:
        parts.append(_readout(lines, cursor, width, readout_rows))
    if schedule_h:
        parts.append(_schedule_chart(job, width, schedule_h))
    return stack(parts, width, height)


def best_lr_events(lines: list[LrLine], metric: str) -> list[Event]:
    """Each line's best LR as an event ("best LR 0.01 (adam)", experiments/annotations.py's words), by the metric
    the chart shows."""
    events = []
    for index, line in enumerate(lines):
        main = line.solid()
        finite = np.isfinite(main)
        if not finite.any():
            continue
        pick = int(np.nanargmax(np.where(finite, main, -np.inf)) if metric == "val acc"
                   else np.nanargmin(np.where(finite, main, np.inf)))
        lr = float(line.lrs[pick])
        text = f"best LR {format_lr(lr)} ({line.label}, by {metric})"
        events.append(Event(Annotation(BEST_LR, text, LR, lr=lr), "", color_of(line.color, index), "●"))
    return events


def _snap(x: Optional[float], lrs: set[float]) -> Optional[float]:
    """The measured LR nearest to the crosshair (on the log axis)."""
    if x is None or not lrs:
        return None
    return min(lrs, key=lambda lr: abs(math.log10(lr) - math.log10(x)))


def _lr_chart(lines: list[LrLine], metric: str, width: int, height: int, log_y: bool, full: bool, title: str,
              x_range, cursor: Optional[float], chance: Optional[float]) -> Text:
    higher_is_better = metric == "val acc"
    series, markers, bands, entries = [], [], [], []
    for index, line in enumerate(lines):
        color = color_of(line.color, index)
        main = line.solid()
        best_lr = None
        if line.lrs.size:
            series.append(PlotSeries(line.lrs, main, color=color, mark_divergence=False, legend=False,
                                     emphasis=line.focused))
            if main is line.best and np.isfinite(line.final).any():
                series.append(PlotSeries(line.lrs, line.final, color=color, style="dashed", legend=False,
                                         mark_divergence=False))
            if (line.counts > 1).any():
                bands.append(Band(line.lrs, line.lo, line.hi, line.color if line.color != NEUTRAL else color))
            for lr, value, point_color in zip(line.lrs, main, line.point_colors):
                if math.isfinite(value):
                    markers.append(Marker(float(lr), float(value), "•", color_of(point_color, index)))
            finite = np.isfinite(main)
            if finite.any():
                pick = int(np.nanargmax(np.where(finite, main, -np.inf)) if higher_is_better
                           else np.nanargmin(np.where(finite, main, np.inf)))
                best_lr = float(line.lrs[pick])
                markers.append(Marker(best_lr, float(main[pick]), "●", color, text=format_value(best_lr)))
        for lr, point_color in line.diverged:
            markers.append(Marker(lr, math.inf, "×", color_of(point_color, index), row=index))
        label = line.label + (f" best {format_value(best_lr)}" if best_lr is not None else "")
        entries.append(LegendEntry("━", color, label, line.focused))
    if any(line.diverged for line in lines):
        entries.append(LegendEntry("×", "bold", "diverged"))
    solid = "best" if metric != "train loss" else "final"
    heading = f"{solid} {metric} vs LR" + (" (dashed: final)" if metric != "train loss" else "")
    heading += f" · {title}" if title else ""
    y_range = None
    if not full and not higher_is_better:
        values = [s.y for s in series]
        top = robust_top(values, chance)
        finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
        finite = finite[finite > 0] if log_y else finite
        if top is not None and finite.size and top > finite.min():
            y_range = (float(finite.min()), top)
    return render_chart(series, width, height, title=heading, x_label="lr", log_x=True, log_y=log_y,
                        markers=markers, bands=bands, legend=entries, x_range=x_range, y_range=y_range,
                        vline=cursor)


def _readout(lines: list[LrLine], lr: Optional[float], width: int, rows: int) -> Text:
    out = Lines(width, rows)
    if lr is None:
        return out.to_text()
    col = out.write(0, 0, f"lr {format_value(lr)} │", TICK_STYLE) + 1
    row = 0
    for index, line in enumerate(lines):
        at = np.flatnonzero(np.isclose(line.lrs, lr))
        value = float(line.solid()[at[0]]) if at.size else None
        diverged = any(math.isclose(d, lr) for d, _ in line.diverged)
        text = f"{truncate(line.label, max(8, width // 3))} " + ("diverged" if diverged and value is None
                                                                  else format_reading(value))
        if col + len(text) + 2 > width and col > 0:
            row, col = row + 1, 0
        if row >= rows:
            break
        col = out.write(row, col, "━", color_of(line.color, index)) + 1
        col = out.write(row, col, text) + 2
    return out.to_text()


def _schedule_chart(job: ViewJob, width: int, height: int) -> Text:
    schedules = [PlotSeries(run.series[LR]["step"], run.series[LR]["value"], color=unit.color, legend=False)
                 for unit in job.units if not unit.hidden for run in unit.runs if LR in run.series]
    log_range = schedule_log_range(schedules)
    return render_chart(schedules, width, height, title="applied LR" + (" · log y" if log_range else ""),
                        x_label="step", log_y=log_range is not None, y_range=log_range, legend=False)


def schedule_log_range(schedules: list[PlotSeries]) -> Optional[tuple[float, float]]:
    """A log-y range when the runs' peak LRs differ by more than 20x, else None (linear). The floor is 1% of the
    smallest peak: a cosine schedule ending at 0 would otherwise stretch the axis over ten empty decades."""
    peaks = []
    for s in schedules:
        _, values, _ = finite_part(s.x, s.y)
        if values.size and values.max() > 0:
            peaks.append(float(values.max()))
    if not peaks or max(peaks) <= 20 * min(peaks):
        return None
    return 0.01 * min(peaks), max(peaks)


class LrEffectsView(PlotView):
    """Metric against learning rate per optimizer."""

    BINDINGS = [
        Binding("y", "cycle_metric", "Y metric"),
        Binding("l", "toggle_log_y", "Log y"),
        Binding("f", "toggle_full_range", "Full y range", show=False),  # w first at 80 columns
        Binding("w", "sweep", "Sweep around suggestions"),
    ]
    METRIC_KEYS = (LR,)
    ARTIFACT_KEYS = (ARTIFACT_LR_SUGGESTION,)

    class SweepRequested(Message):
        """Plan a sweep around the suggested LRs of these range tests (the app opens the Launch view with it)."""

        def __init__(self, run_ids: list[str]) -> None:
            super().__init__()
            self.run_ids = run_ids

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = "val loss"
        self.log_y = False
        self.full_range = False

    def options(self) -> dict:
        return {"metric": self.metric, "log_y": self.log_y, "full_range": self.full_range}

    def build(self, job: ViewJob) -> Text:
        return build_lr(job)

    def wanted_keys(self, run_id: str) -> list[str]:
        """A range test draws its smoothed loss against its LR; a training run only its applied LR (schedules)."""
        run = self.model.runs.get(run_id) if self.model is not None else None
        present = self.model.series.get(run_id, {}) if self.model is not None else {}
        keys = RANGE_TEST_KEYS if run is not None and is_range_test(run) else self.METRIC_KEYS
        return [key for key in keys if key in present]

    def action_sweep(self) -> None:
        tests = [rid for unit in self.plan.units if not unit.hidden for rid in unit.run_ids
                 if self.model is not None and is_range_test(self.model.runs.get(rid, {}))]
        if not tests:
            self.app.notify("no LR range test among the plotted runs: start one with ctrl+t in the Launch view "
                            "(6), or `mxdash lrfind FILE`", severity="warning", timeout=6)
            return
        self.post_message(self.SweepRequested(tests))

    def action_cycle_metric(self) -> None:
        self.metric = LR_METRICS[(LR_METRICS.index(self.metric) + 1) % len(LR_METRICS)]
        self.options_changed()

    def action_toggle_log_y(self) -> None:
        self.log_y = not self.log_y
        self.options_changed()

    def action_toggle_full_range(self) -> None:
        self.full_range = not self.full_range
        self.options_changed()
