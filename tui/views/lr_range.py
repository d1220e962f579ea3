"""LR effects, the LR range tests (runs of kind `lrfind`: `mxdash lrfind FILE`, or ctrl+t in the Launch view): the
smoothed loss of each test against its exponentially growing LR (log x), in its optimizer's colour (the same in every
tab: tui/grouping.py), the suggested LR marked ◆ on the curve and labelled with its value, and the step after it:
`lr_sweep_plan`, the Launch view's sweep around the suggestions (tui/sweep.py).

The curve is the smoothed loss the suggestion rule reads (experiments/lrfind.py), not the raw loss: the raw one is
noisy enough to hide the valley. The y axis stops a little above the curves' start (a range test ends by blowing up
to 4x its best; `f` shows all of it), as `mxdash lrfind` clips its sparkline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from rich.text import Text

from experiments.annotations import best_lr
from experiments.config import ConfigError, read_experiment_file
from experiments.lrfind import RULES
from experiments.metrics import ARTIFACT_LR_SUGGESTION, LR, LRFIND_KIND, SMOOTHED_LOSS
from tui.cli_runner import PROJECT_ROOT
from tui.grouping import describe, flat_of, is_seed_key, varying_keys
from tui.plot import LegendEntry, Marker, PlotSeries, color_of, render_chart
from tui.plot.text import Lines, TICK_STYLE, truncate
from tui.sweep import find_experiment_file, sweep_lrs, sweep_overrides
from tui.views.base import ViewJob, format_reading
from tui.views.events import Event

SUGGESTION_MARK = "◆"
RANGE_TEST_KEYS = (LR, SMOOTHED_LOSS)
NOT_NAMING = ("optimizer.lr", "lrfind.", "schedule.", "experiment.")  # the same in every test, or the test itself


def is_range_test(row: dict) -> bool:
    return row.get("kind") == LRFIND_KIND


@dataclass
class RangeCurve:
    run_id: str
    label: str
    color: object
    lr: np.ndarray
    smoothed: np.ndarray
    suggestion: Optional[dict]  # the lr_suggestion payload (None until the test ends)
    optimizer: str = ""
    focused: bool = False

    @property
    def suggested(self) -> Optional[float]:
        lr = (self.suggestion or {}).get("lr")
        return float(lr) if isinstance(lr, (int, float)) and lr > 0 else None


def range_curves(job: ViewJob) -> list[RangeCurve]:
    """One curve per shown range test: its `lr` and `smoothed_loss` points of the same steps."""
    tests = [(unit, run) for unit in job.units if not unit.hidden for run in unit.runs if is_range_test(run.row)]
    flats = [flat_of(run.row) for _, run in tests]
    naming = [k for k in varying_keys(flats) if not k.startswith(NOT_NAMING) and not is_seed_key(k)]
    curves = []
    for (unit, run), flat in zip(tests, flats):
        lr, smoothed = run.series.get(LR), run.series.get(SMOOTHED_LOSS)
        if lr is None or smoothed is None:
            x = y = np.zeros(0)
        else:
            _, at_lr, at_smoothed = np.intersect1d(lr["step"], smoothed["step"], assume_unique=True,
                                                   return_indices=True)
            x, y = lr["value"][at_lr], smoothed["value"][at_smoothed]
        optimizer = str(flat.get("optimizer.name") or run.row.get("optimizer") or "")
        label = describe(flat, naming) or optimizer or run.id
        suggestion = run.artifacts.get(ARTIFACT_LR_SUGGESTION)
        color = job.optimizer_colors.get(optimizer, unit.color)
        curves.append(RangeCurve(run.id, label, color, x, y, suggestion[-1].payload if suggestion else None,
                                 optimizer, unit.focused))
    return curves


def curve_value_at(curve: RangeCurve, lr: float) -> Optional[float]:
    """The smoothed loss at `lr`, interpolated in log LR (the LR grows by a constant factor per step)."""
    finite = np.isfinite(curve.smoothed) & (curve.lr > 0)
    x, y = np.log10(curve.lr[finite]), curve.smoothed[finite]
    if not x.size or lr <= 0 or not x[0] <= math.log10(lr) <= x[-1]:
        return None
    return float(np.interp(math.log10(lr), x, y))


def suggestion_events(curves: list[RangeCurve]) -> list[Event]:
    return [Event(a, "", curve.color, SUGGESTION_MARK) for curve in curves for a in best_lr(curve.suggestion)]


def range_x_extent(curves: list[RangeCurve]) -> Optional[tuple[float, float]]:
    lrs = np.concatenate([c.lr[np.isfinite(c.lr) & (c.lr > 0)] for c in curves] or [np.zeros(0)])
    if lrs.size < 2 or lrs.max() <= lrs.min():
        return None
    return float(lrs.min()), float(lrs.max())


def range_chart(curves: list[RangeCurve], width: int, height: int, log_y: bool, full: bool, title: str,
                x_range, cursor: Optional[float]) -> Text:
    series, markers, entries = [], [], []
    for curve in curves:
        color = color_of(curve.color, 0)
        series.append(PlotSeries(curve.lr, curve.smoothed, color=color, legend=False, mark_divergence=False,
                                 emphasis=curve.focused))
        suggested = curve.suggested
        label = curve.label
        if suggested is not None:
            at = curve_value_at(curve, suggested)
            markers.append(Marker(suggested, math.inf if at is None else at, SUGGESTION_MARK, color,
                                  text=f"{suggested:.3g}"))
            label += f" {suggested:.3g}"
        elif curve.suggestion is not None:
            label += " (no suggestion)"
        entries.append(LegendEntry("━", color, label, curve.focused))
    rules = {(c.suggestion or {}).get("rule") for c in curves if c.suggested is not None}
    if rules:
        entries.append(LegendEntry(SUGGESTION_MARK, "bold", "suggested: " + ", ".join(
            RULES.get(rule, str(rule)) for rule in sorted(rules, key=str))))
    heading = "LR range test: smoothed loss vs LR" + (f" · {title}" if title else "")
    y_range = None if full else _clipped_range(curves, log_y)
    return render_chart(series, width, height, title=heading, x_label="lr", log_x=True, log_y=log_y, markers=markers,
                        legend=entries, x_range=x_range, y_range=y_range, vline=cursor)


def _clipped_range(curves: list[RangeCurve], log_y: bool) -> Optional[tuple[float, float]]:
    """From the lowest point to 15% above the highest start: the valley readable under the final blow-up."""
    lows, starts = [], []
    for curve in curves:
        finite = curve.smoothed[np.isfinite(curve.smoothed)]
        finite = finite[finite > 0] if log_y else finite
        if finite.size:
            lows.append(float(finite.min()))
            starts.append(float(finite[0]))
    if not lows:
        return None
    low, top = min(lows), max(starts) * 1.15
    return (low, top) if top > low else None


def range_readout(curves: list[RangeCurve], lr: Optional[float], width: int, rows: int) -> Text:
    """`lr 0.01 │ ━ sgd 2.25  ━ adam 0.41`: each test's smoothed loss at the crosshair."""
    out = Lines(width, rows)
    if lr is None:
        return out.to_text()
    col = out.write(0, 0, f"lr {lr:.3g} │", TICK_STYLE) + 1
    row = 0
    for curve in curves:
        text = f"{truncate(curve.label, max(8, width // 3))} {format_reading(curve_value_at(curve, lr))}"
        if col + len(text) + 2 > width and col > 0:
            row, col = row + 1, 0
        if row >= rows:
            break
        col = out.write(row, col, "━", color_of(curve.color, 0)) + 1
        col = out.write(row, col, text) + 2
    return out.to_text()


# -- the sweep around the suggestions -------------------------------------------------------------------------------
def lr_sweep_plan(model, run_ids: list[str], files: list[Path]) -> tuple[Path, list[str], str] | str:
    """(experiment file, `--set` items, what it runs) for a sweep around the suggestions of the range tests among
    `run_ids` (those of the newest experiment among them), or why there is none."""
    tests = [rid for rid in run_ids if is_range_test(model.runs.get(rid, {}))]
    if not tests:
        return "no LR range test among the plotted runs: start one from the Launch view (ctrl+t) or with " \
               "`mxdash lrfind FILE`"
    newest = max(tests, key=lambda rid: (model.runs[rid].get("created") or 0.0, rid))
    experiment = model.runs[newest].get("experiment_id")
    pairs, names = [], []
    for rid in tests:
        run = model.runs[rid]
        found = model.latest_artifact(rid, ARTIFACT_LR_SUGGESTION)
        lr = (found.payload if found else {}).get("lr")
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        if run.get("experiment_id") == experiment and lr and "optimizer" in config:
            pairs.append((config["optimizer"], float(lr)))
            names.append(f"{config['optimizer'].get('name')} {', '.join(f'{v:g}' for v in sweep_lrs(lr))}")
    if not pairs:
        return f"the range tests of {experiment} have no suggested LR (yet): wait for them to finish"
    stored = (model.experiments.get(experiment) or {}).get("file")
    name = (model.runs[newest].get("config") or {}).get("experiment", {}).get("name")
    path = find_experiment_file(stored, name, files, roots=(Path.cwd(), PROJECT_ROOT))
    if path is None:
        return f"cannot find the experiment file of {experiment} ({stored or name}): launch it from the Launch view"
    try:
        grid = read_experiment_file(path).get("grid", {})
    except ConfigError as e:
        return str(e)
    return path, sweep_overrides(grid, pairs), f"{path.name}: " + "; ".join(names)
