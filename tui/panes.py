"""Plot panes of the dashboard: training curves, LR effects, dead ReLUs.

Each pane is a focusable Static. `update_view(model, selected, changed)` (called by the main screen after every poll
and on selection changes) decides on the UI thread, cheaply, whether anything the pane shows changed; if so it
snapshots references to the arrays it needs into a `ViewJob` and starts a thread worker that builds the Rich Text
with tui.plot (pure numpy) and posts `PlotPane.Rendered`; the UI thread only sets the finished Text. Nothing is
rendered on the UI thread, and nothing is re-rendered when neither data, selection, options nor size changed.

The builders (`build_curves`, `build_lr`, `build_dead`) are pure functions of a ViewJob, tested without Textual.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.visual import Visual
from textual.widget import _RenderCache
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from tui.plot import (HINT_STYLE, Marker, PlotSeries, blank_text, color_of, finite_part, render_chart,
                      render_heatmap, smooth_for_display, truncate)

SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)  # `m` cycles through these; 0 = raw only
X_AXES = ("step", "epoch", "wall")
LR_METRICS = ("val loss", "train loss", "val acc")
STACKED_GUTTER = 6  # y-label column of stacked charts: "0.25┤" fits, so their x columns usually line up
NO_SELECTION_HINT = "No runs to plot: select runs in the Runs tab (space), or highlight a run to plot its experiment."
RUN_FIELDS = ("status", "optimizer", "lr", "experiment_id", "diverged_step", "started", "best_val_loss",
              "val_loss", "train_loss", "best_val_acc", "val_acc")


# ---------------------------------------------------------------------------------------------------------------
# Snapshots handed to the render worker
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """What a builder needs of one run: its row fields, a legend label, a colour, and metric arrays by key.

    Arrays are the model's views (not copies): the model only writes past their end, except when a resumed run
    rewinds, which at worst shows one frame of mixed data before the next render."""
    id: str
    label: str
    color: int
    row: dict
    series: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # key -> {step, epoch, wall, value}


@dataclass
class ViewJob:
    width: int
    height: int
    options: dict
    runs: list[RunData]
    title: str = ""


def format_lr(lr) -> str:
    """1e-3 style for small learning rates, plain otherwise."""
    if lr is None or not isinstance(lr, (int, float)) or not math.isfinite(lr):
        return "?"
    if lr == 0 or lr >= 0.01:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def short_ids(run_ids: Sequence[str], runs: dict) -> tuple[dict[str, str], str]:
    """Run id -> short name ("#3" when every run is from one experiment), plus that experiment id (else "")."""
    experiments = {runs.get(rid, {}).get("experiment_id") for rid in run_ids}
    if len(experiments) == 1:
        experiment = next(iter(experiments)) or ""
        if experiment:
            prefix = experiment + "."
            if all(rid.startswith(prefix) for rid in run_ids):
                return {rid: "#" + rid[len(prefix):] for rid in run_ids}, experiment
    return {rid: rid for rid in run_ids}, ""


def run_label(short: str, row: dict, extra: Sequence[str] = ()) -> str:
    """`#3 adam 1e-3`, plus the values of whatever else differs between the shown runs (`leaky_relu`)."""
    return " ".join([short, row.get("optimizer") or "?", format_lr(row.get("lr")), *extra])


def distinguishing_values(rows: Sequence[dict]) -> list[list[str]]:
    """Per run, the values of the config keys (besides optimizer and lr) that differ between these runs, so two
    runs that differ only in, say, the activation get different legend labels."""
    from experiments.report import MISSING, differing_config

    configs = [{"config": row.get("config") or {}} for row in rows]
    keys = [(key, values) for key, values in differing_config(configs)
            if key not in ("optimizer.name", "optimizer.lr", "experiment.description")
            and all(value != MISSING for value in values)]
    return [[_compact(values[i]) for _, values in keys] for i in range(len(rows))]


def _compact(value) -> str:
    if isinstance(value, list):
        return "x".join(map(str, value))
    return format_lr(value) if isinstance(value, float) else str(value)


def natural_key(text: str) -> list:
    """"dead/conv10" after "dead/conv2"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def snapshot_runs(model, selected: Sequence[str], keys: Callable[[str], list[str]]) -> tuple[list[RunData], str]:
    """References (no copies) to the selected runs' rows and the series `keys(run_id)` names."""
    runs = [rid for rid in selected if rid in model.runs]
    short, experiment = short_ids(runs, model.runs)
    data = []
    extras = distinguishing_values([model.runs[rid] for rid in runs]) if len(runs) > 1 else [[] for _ in runs]
    for index, rid in enumerate(runs):
        row = {name: model.runs[rid].get(name) for name in RUN_FIELDS}
        run = RunData(rid, run_label(short[rid], row, extras[index]), index, row)
        per_run = model.series.get(rid, {})
        for key in keys(rid):
            series = per_run.get(key)
            if series is not None and len(series.value):
                run.series[key] = {"step": series.step, "epoch": series.epoch, "wall": series.wall,
                                   "value": series.value}
        data.append(run)
    return data, experiment


def series_signature(series) -> tuple:
    """Cheap change detector for a MetricSeries: identity, version (when the model keeps one), length, last step."""
    if series is None:
        return (None,)
    n = len(series.value)
    return id(series), getattr(series, "version", None), n, float(series.step[-1]) if n else None


# ---------------------------------------------------------------------------------------------------------------
# Pure builders (run in the worker thread)
# ---------------------------------------------------------------------------------------------------------------

def stack(parts: list[Text], width: int, height: int) -> Text:
    """Join chart blocks vertically and pad/crop to exactly `height` lines."""
    lines: list[Text] = []
    for part in parts:
        lines.extend(part.split("\n", allow_blank=True))
    lines = lines[:height]
    lines += [Text(" " * width) for _ in range(height - len(lines))]
    out = Text("\n", no_wrap=True, overflow="crop", end="").join(lines)
    out.no_wrap, out.overflow, out.end = True, "crop", ""
    return out


def hint(width: int, height: int, message: str) -> Text:
    return blank_text(width, height, truncate(message, width), HINT_STYLE)


def split_height(height: int, first_share: float, minimum_second: int) -> tuple[int, int]:
    """Heights of two stacked charts; the second is dropped (0) when it would be too short to read."""
    second = max(minimum_second, int(round(height * (1 - first_share))))
    if height - second < 6:
        return height, 0
    return height - second, second


def _x_values(arrays: dict, axis: str, origin: float, scale: float) -> np.ndarray:
    if axis == "wall":
        return (arrays["wall"] - origin) / scale
    return arrays[axis]


def wall_scale(runs: list[RunData]) -> tuple[dict[str, float], float, str]:
    """Per-run start time, and the unit (s, min or h) that suits the longest elapsed time."""
    origins, longest = {}, 0.0
    for run in runs:
        starts = [a["wall"][0] for a in run.series.values() if len(a["wall"])]
        ends = [a["wall"][-1] for a in run.series.values() if len(a["wall"])]
        origin = run.row.get("started") or (min(starts) if starts else 0.0)
        origins[run.id] = float(origin)
        if ends:
            longest = max(longest, max(ends) - origin)
    if longest > 2 * 3600:
        return origins, 3600.0, "h"
    if longest > 120:
        return origins, 60.0, "min"
    return origins, 1.0, "s"


def loss_top(smoothed_max: list[float], first_values: list[float]) -> Optional[float]:
    """Upper y limit for a linear loss axis: a run blowing up before it diverges would squash every other curve,
    so cap at 4x the largest initial loss (the clipped part leaves through the top edge)."""
    finite_max = [v for v in smoothed_max if math.isfinite(v)]
    finite_first = [v for v in first_values if math.isfinite(v) and v > 0]
    if not finite_max or not finite_first:
        return None
    top = max(finite_max)
    cap = 4.0 * max(finite_first)
    return cap if top > cap else None


def build_curves(job: ViewJob) -> Text:
    """Training (and dashed validation) loss per run, and validation accuracy below."""
    width, height, opts = job.width, job.height, job.options
    if not job.runs:
        return hint(width, height, NO_SELECTION_HINT)
    if not any("train_loss" in r.series or "val_loss" in r.series for r in job.runs):
        return hint(width, height, "No loss points yet for the selected runs (queued, or still on the first "
                                   "logging interval).")
    axis, smoothing, log_y = opts["x"], opts["smoothing"], opts["log_y"]
    has_acc = any("val_acc" in r.series for r in job.runs)
    loss_h, acc_h = split_height(height, 0.66, 6) if has_acc else (height, 0)
    origins, scale, unit = wall_scale(job.runs) if axis == "wall" else ({}, 1.0, "")
    x_label = f"wall ({unit})" if axis == "wall" else axis
    n_points = 4 * width  # two samples per braille pixel column

    series, markers, tops, firsts = [], [], [], []
    for run in job.runs:
        x_of = lambda a: _x_values(a, axis, origins.get(run.id, 0.0), scale)  # noqa: E731
        train = run.series.get("train_loss")
        if train is not None:
            x, y = x_of(train), train["value"]
            if smoothing > 0:
                series.append(PlotSeries(x, y, color=run.color, faint=True, legend=False))
                sx, sy = smooth_for_display(x, y, smoothing, n_points)
                series.append(PlotSeries(sx, sy, label=run.label, color=run.color, mark_divergence=False))
                tops.append(float(np.max(sy)) if sy.size else math.nan)
                firsts.append(float(sy[0]) if sy.size else math.nan)
            else:
                series.append(PlotSeries(x, y, label=run.label, color=run.color))
                fx, fy, _ = finite_part(x, y)
                tops.append(float(fy.max()) if fy.size else math.nan)
                firsts.append(float(fy[:10].mean()) if fy.size else math.nan)
            markers.extend(_divergence_marker(run, x, y, axis))
        val = run.series.get("val_loss")
        if val is not None:
            series.append(PlotSeries(x_of(val), val["value"], color=run.color, style="dashed",
                                     legend=train is None, label=run.label))
    if any("val_loss" in r.series for r in job.runs):
        series.append(PlotSeries(np.zeros(0), np.zeros(0), label="val (dashed)", color="grey70", style="dashed"))
    x_range = _x_extent(series)
    top = None if log_y else loss_top(tops, firsts)
    mode = [x_label, "log y" if log_y else "", f"ema {smoothing:g}" if smoothing > 0 else "raw"]
    title = "loss" + (f" {job.title}" if job.title else "") + " · " + " · ".join(m for m in mode if m)
    y_range = _finish_range(series, top) if top is not None else None
    parts = [render_chart(series, width, loss_h, title=title, x_label=x_label, log_y=log_y, y_range=y_range,
                          x_range=x_range, markers=markers, min_gutter=STACKED_GUTTER)]
    if acc_h:
        acc = [PlotSeries(_x_values(r.series["val_acc"], axis, origins.get(r.id, 0.0), scale),
                          r.series["val_acc"]["value"], label=r.label, color=r.color, legend=False)
               for r in job.runs if "val_acc" in r.series]
        parts.append(render_chart(acc, width, acc_h, title="val accuracy", x_label=x_label, x_range=x_range,
                                  min_gutter=STACKED_GUTTER))
    return stack(parts, width, height)


def _x_extent(series: list[PlotSeries]) -> Optional[tuple[float, float]]:
    """Common x range of stacked charts, so that a column means the same step in each."""
    ends = [s.x[[0, -1]] for s in series if len(s.x)]
    if not ends:
        return None
    ends = np.concatenate(ends)
    ends = ends[np.isfinite(ends)]
    return (float(ends.min()), float(ends.max())) if ends.size and ends.max() > ends.min() else None


def _finish_range(series: list[PlotSeries], top: float) -> Optional[tuple[float, float]]:
    """(data minimum, top): the y range when only the top is capped."""
    lows = []
    for s in series:
        _, y, _ = finite_part(s.x, s.y)
        if y.size:
            lows.append(float(y.min()))
    low = min(lows) if lows else 0.0
    return (low, top) if top > low else None


def _divergence_marker(run: RunData, x: np.ndarray, y: np.ndarray, axis: str) -> list[Marker]:
    """A run the worker stopped as diverged may have logged no NaN: mark it at its last point (or diverged step)."""
    if run.row.get("status") != "diverged" or (y.size and not np.isfinite(y[-1])):
        return []
    step = run.row.get("diverged_step")
    where = float(step) if axis == "step" and step is not None else (float(x[-1]) if x.size else None)
    return [Marker(where, math.inf, "×", run.color)] if where is not None else []


def _is_diverged(row: dict, value) -> bool:
    return row.get("status") == "diverged" or row.get("diverged_step") is not None or (
        value is not None and not math.isfinite(value))


def lr_points(runs: list[RunData], metric: str) -> dict[str, dict]:
    """Per optimizer: sorted LRs with (best, final) metric values, and the LRs of diverged runs."""
    best_key, final_key = {"val loss": ("best_val_loss", "val_loss"), "train loss": (None, "train_loss"),
                           "val acc": ("best_val_acc", "val_acc")}[metric]
    groups: dict[str, dict] = {}
    for run in runs:
        row, lr = run.row, run.row.get("lr")
        if not isinstance(lr, (int, float)) or not lr > 0:
            continue
        group = groups.setdefault(row.get("optimizer") or "?", {"lr": [], "best": [], "final": [], "diverged": []})
        final = row.get(final_key)
        best = row.get(best_key) if best_key else None
        if _is_diverged(row, final if final is not None else best):
            group["diverged"].append(float(lr))
            continue
        if final is None and best is None:
            continue  # not measured yet
        group["lr"].append(float(lr))
        group["final"].append(math.nan if final is None else float(final))
        group["best"].append(math.nan if best is None else float(best))
    for group in groups.values():
        order = np.argsort(group["lr"], kind="stable")
        for key in ("lr", "final", "best"):
            group[key] = np.asarray(group[key], dtype=np.float64)[order]
    return groups


def build_lr(job: ViewJob) -> Text:
    """Loss (or accuracy) against LR on a log-x axis, one line per optimizer; below, the applied LR schedules."""
    width, height, opts = job.width, job.height, job.options
    if not job.runs:
        return hint(width, height, NO_SELECTION_HINT)
    metric = opts["metric"]
    groups = lr_points(job.runs, metric)
    distinct_lrs = {lr for g in groups.values() for lr in list(g["lr"]) + g["diverged"]}
    has_schedule = any("lr" in r.series for r in job.runs)
    top_h, schedule_h = split_height(height, 0.6, 6) if has_schedule else (height, 0)
    parts = []
    if len(distinct_lrs) < 2:
        parts.append(hint(width, top_h if schedule_h else height,
                          "No LR axis: the selected runs share one learning rate (select an LR sweep)."))
    else:
        parts.append(_lr_chart(groups, metric, width, top_h, opts["log_y"], job.title))
    if schedule_h:
        schedules = [PlotSeries(r.series["lr"]["step"], r.series["lr"]["value"], label=r.label, color=r.color)
                     for r in job.runs if "lr" in r.series]
        log_range = schedule_log_range(schedules)
        parts.append(render_chart(schedules, width, schedule_h, title="applied LR" + (" · log y" if log_range
                                                                                        else ""),
                                  x_label="step", log_y=log_range is not None, y_range=log_range))
    return stack(parts, width, height)


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


def _lr_chart(groups: dict, metric: str, width: int, height: int, log_y: bool, title: str) -> Text:
    higher_is_better = metric == "val acc"
    series, markers = [], []
    best_label, diverged_label = "best LR", "diverged"
    for index, (optimizer, group) in enumerate(sorted(groups.items())):
        color = color_of(index, index)
        lrs, best, final = group["lr"], group["best"], group["final"]
        main = best if np.isfinite(best).any() else final
        if lrs.size:
            series.append(PlotSeries(lrs, main, label=optimizer, color=color, mark_divergence=False))
            if main is best and np.isfinite(final).any():
                series.append(PlotSeries(lrs, final, color=color, style="dashed", legend=False,
                                         mark_divergence=False))
            finite = np.isfinite(main)
            if finite.any():
                pick = np.nanargmax(np.where(finite, main, -np.inf)) if higher_is_better else \
                    np.nanargmin(np.where(finite, main, np.inf))
                markers.append(Marker(float(lrs[pick]), float(main[pick]), "●", color, best_label))
                best_label = None  # one legend entry for all best-LR markers
        for lr in group["diverged"]:
            markers.append(Marker(lr, math.inf, "×", color, diverged_label))
            diverged_label = None
    solid = "best" if metric != "train loss" else "final"
    heading = f"{solid} {metric} vs LR" + (" (dashed: final)" if metric != "train loss" else "")
    heading += f" {title}" if title else ""
    return render_chart(series, width, height, title=heading, x_label="lr", log_x=True, log_y=log_y,
                        markers=markers)


def dead_layers(run: RunData) -> list[str]:
    return sorted((k for k in run.series if k.startswith("dead/")), key=natural_key)


def dead_matrix(run: RunData, layers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """layers x probes matrix on the steps of the longest layer series (layers probed together share steps;
    a layer whose latest probe has not arrived yet gets NaN there)."""
    longest = max(layers, key=lambda k: len(run.series[k]["step"]))
    steps = run.series[longest]["step"]
    matrix = np.full((len(layers), len(steps)), np.nan)
    for row, key in enumerate(layers):
        arrays = run.series[key]
        where = np.searchsorted(steps, arrays["step"])
        inside = where < len(steps)
        matrix[row, where[inside]] = arrays["value"][inside]
    return matrix, steps


def build_dead(job: ViewJob) -> Text:
    """Dead fraction per (run, layer) over steps (0..1), then one layers x steps heatmap per run."""
    width, height, opts = job.width, job.height, job.options
    if not job.runs:
        return hint(width, height, NO_SELECTION_HINT)
    probed = [(run, dead_layers(run)) for run in job.runs]
    probed = [(run, layers) for run, layers in probed if layers]
    if not probed:
        return hint(width, height, "No dead-ReLU probe data for the selected runs (the net has no ReLU layers, "
                                   "or probes are off).")
    steps = np.concatenate([run.series[k]["step"] for run, layers in probed for k in layers])
    x_range = (float(steps.min()), float(steps.max()))
    parts, used = [], 0
    label_width = min(max(len(_layer_name(k)) for _, layers in probed for k in layers), 16)
    if not opts["heatmaps_only"]:
        lines_h = split_height(height, 0.45, 6)[0] if height >= 14 else height
        parts.append(_dead_lines(probed, width, lines_h, x_range, gutter=label_width + 1))
        used = lines_h
    for index, (run, layers) in enumerate(_most_dead_first(probed)):
        need = len(layers) + 2
        if used + need > height:
            left = len(probed) - index
            if used < height:
                parts.append(hint(width, 1, f"+{left} more run{'s' * (left > 1)}: select fewer runs to see "
                                            f"their heatmaps"))
            break
        matrix, run_steps = dead_matrix(run, layers)
        parts.append(render_heatmap(matrix, [_layer_name(k) for k in layers], width, x=run_steps,
                                    title=_heatmap_title(run, layers, matrix, run_steps), x_range=x_range,
                                    label_width=label_width))
        used += need
    return stack(parts, width, height)


def _layer_name(key: str) -> str:
    return key[len("dead/"):]


def _heatmap_title(run: RunData, layers: list[str], matrix: np.ndarray, steps: np.ndarray) -> str:
    """Run label plus the first time a layer went mostly dead: "the large LR killed layer 2 at step 300"."""
    mostly_dead = np.nan_to_num(matrix, nan=0.0) > 0.5
    if not mostly_dead.any():
        return run.label
    first_col = np.where(mostly_dead.any(axis=0))[0][0]
    layer = layers[int(np.argmax(mostly_dead[:, first_col]))]
    return f"{run.label} · {_layer_name(layer)} >50% dead at step {steps[first_col]:g}"


def _most_dead_first(probed: list) -> list:
    """Heatmaps of the runs with the deadest layer first: when not all fit, the ones worth seeing do."""
    def worst(item):
        run, layers = item
        return max(float(np.nanmax(run.series[k]["value"])) if np.isfinite(run.series[k]["value"]).any() else 0.0
                   for k in layers)
    return sorted(probed, key=worst, reverse=True)


def _dead_lines(probed: list, width: int, height: int, x_range: tuple[float, float], gutter: int) -> Text:
    series, color = [], 0
    many_runs = len(probed) > 1
    for run, layers in probed:
        for key in layers:
            arrays = run.series[key]
            label = f"{run.label.split(' ')[0]} {_layer_name(key)}" if many_runs else _layer_name(key)
            series.append(PlotSeries(arrays["step"], arrays["value"], label=label, color=color))
            color += 1
    title = "dead ReLU fraction" + ("" if many_runs else f" · {probed[0][0].label}")
    return render_chart(series, width, height, title=title, x_label="step", y_range=(0.0, 1.0), x_range=x_range,
                        min_gutter=gutter)


# ---------------------------------------------------------------------------------------------------------------
# Widgets
# ---------------------------------------------------------------------------------------------------------------

class PlotPane(Static, can_focus=True):
    """Base of the plot panes: change detection, the off-thread render worker, and the Rendered message."""

    DEFAULT_CSS = """
    PlotPane {
        width: 1fr;
        height: 1fr;
    }
    """
    METRIC_KEYS: tuple[str, ...] = ()  # series keys that the pane draws (prefixes end with "/")

    class Rendered(Message):
        """A render worker finished: `text` is the pane's new content for render number `generation`; `content`
        and `strips` are that text converted and rendered for the widget (None if the worker could not)."""

        def __init__(self, generation: int, text: Text, content=None, strips=None, size=None,
                     style=None) -> None:
            super().__init__()
            self.generation = generation
            self.text = text
            self.content = content
            self.strips = strips
            self.size = size
            self.style = style

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.model = None
        self.selected: list[str] = []
        self.render_count = 0  # render workers started (tests and debugging)
        self._generation = 0
        self._last_key: Optional[tuple] = None
        self._in_flight = False  # a render worker is running
        self._pending = False  # a render was requested meanwhile
        self._prerendered: Optional[tuple] = None  # (visual, size, visual style, strips) made by the worker

    # -- what subclasses provide ----------------------------------------------------------------------------------
    def options(self) -> dict:
        return {}

    def build(self, job: ViewJob) -> Text:
        raise NotImplementedError

    def wanted_keys(self, run_id: str) -> list[str]:
        """Series keys of a run that this pane draws."""
        present = self.model.series.get(run_id, {}) if self.model is not None else {}
        wanted = []
        for key in self.METRIC_KEYS:
            if key.endswith("/"):
                wanted.extend(k for k in present if k.startswith(key))
            elif key in present:
                wanted.append(key)
        return wanted

    # -- change detection (UI thread, cheap) ----------------------------------------------------------------------
    def update_view(self, model, selected: Sequence[str], changed: set[str]) -> None:
        """New data or selection. Starts a render only if something this pane shows changed."""
        selected = list(selected)
        if model is self.model and selected == self.selected and not (set(changed) & set(selected)):
            return
        self.model, self.selected = model, selected
        self.request_render()

    def render_key(self) -> tuple:
        rows, data = [], []
        for rid in self.selected:
            run = self.model.runs.get(rid)
            rows.append(None if run is None else tuple(run.get(name) for name in RUN_FIELDS))
            per_run = self.model.series.get(rid, {})
            data.append(tuple((key, series_signature(per_run.get(key))) for key in self.wanted_keys(rid)))
        size = self.content_size
        return tuple(self.selected), tuple(sorted(self.options().items())), (size.width, size.height), \
            tuple(rows), tuple(data)

    def request_render(self) -> None:
        """Start a render if what the pane would show changed. One render at a time: a request during a render
        is remembered and served when it finishes (thread workers cannot be stopped, so overlapping renders would
        only compete for the CPU)."""
        size = self.content_size
        if self.model is None or size.width <= 0 or size.height <= 0:
            return  # not laid out yet (or in a hidden tab): on_resize renders when it gets a size
        if self._in_flight:
            self._pending = True
            return
        key = self.render_key()
        if key == self._last_key:
            return
        self._last_key = key
        runs, experiment = snapshot_runs(self.model, self.selected, self.wanted_keys)
        job = ViewJob(size.width, size.height, self.options(), runs, title=experiment)
        self._generation += 1
        self.render_count += 1
        self._in_flight = True
        self._render_in_thread(job, self._generation, self.size, self.visual_style, self.app.console)

    def on_resize(self) -> None:
        self.request_render()

    def options_changed(self) -> None:
        self.request_render()

    # -- worker ---------------------------------------------------------------------------------------------------
    # description: without it Textual builds one from repr() of the arguments, and the repr of a ViewJob prints
    # every numpy array in it (15-25 ms on the UI thread per render)
    @work(thread=True, exclusive=True, group="plot-render", exit_on_error=False, description="plot render")
    def _render_in_thread(self, job: ViewJob, generation: int, size=None, style=None, console=None) -> None:
        worker = get_current_worker()
        try:
            text = self.build(job)
        except Exception as error:  # a plotting bug must not take the dashboard down: show it in the pane
            text = hint(job.width, job.height, f"plot error: {type(error).__name__}: {error}")
        content = strips = None
        if size is not None and console is not None:
            # What Static would do on the UI thread when the text is set (convert it to Content) and shown (render
            # it into lines): 10-20 ms per update, and again on every switch back to the tab. Done here, the UI
            # thread only swaps the lines in (`_render_content`), if size and style are still the same by then.
            try:
                content = Content.from_rich_text(text, console=console)
                strips = Visual.to_strips(self, content, size.width, size.height, style, apply_selection=False)
            except Exception:  # the UI thread renders it the usual way
                content = strips = None
        if not worker.is_cancelled:
            self.post_message(self.Rendered(generation, text, content, strips, size, style))

    def on_plot_pane_rendered(self, message: Rendered) -> None:
        message.stop()
        if message.generation == self._generation:  # an older render finishing late is dropped
            if message.content is not None:
                self._set_rendered(message.text, message.content)
                self._prerendered = (message.content, message.size, message.style, message.strips)
            else:
                self.update(message.text, layout=False)  # the pane's size does not depend on its text
        self._render_finished()

    def _set_rendered(self, text: Text, content: Content) -> None:
        """`Static.update(text, layout=False)` with the text already converted to Content by the worker."""
        self._Static__content = text  # what `content` returns (tests and callers read the Rich Text)
        self._Static__visual = content  # what `visualize(self, text)` would have returned
        self.refresh()

    def _render_content(self) -> None:
        """Widget._render_content, using the worker's lines when they were made for this visual, size and style."""
        pre = self._prerendered
        if (pre is not None and pre[0] is self.visual and pre[1] == self.size and pre[2] == self.visual_style
                and self.text_selection is None):
            self._render_cache = _RenderCache(self.size, pre[3])
            self._dirty_regions.clear()
            return
        super()._render_content()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "plot-render" and event.state in (WorkerState.CANCELLED, WorkerState.ERROR):
            self._render_finished()  # no Rendered message will come

    def _render_finished(self) -> None:
        self._in_flight = False
        if self._pending:
            self._pending = False
            self.request_render()


class CurvesPane(PlotPane):
    """Training loss (smoothed over faint raw) and dashed validation loss per run; validation accuracy below."""

    BINDINGS = [
        Binding("x", "cycle_x", "X axis", show=True),
        Binding("l", "toggle_log_y", "Log y", show=True),
        Binding("m", "cycle_smoothing", "Smoothing", show=True),
    ]
    METRIC_KEYS = ("train_loss", "val_loss", "val_acc")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.x_axis = "step"
        self.log_y = False
        self.smoothing = 0.6  # TensorBoard's default

    def options(self) -> dict:
        return {"x": self.x_axis, "log_y": self.log_y, "smoothing": self.smoothing}

    def build(self, job: ViewJob) -> Text:
        return build_curves(job)

    def action_cycle_x(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]
        self.options_changed()

    def action_toggle_log_y(self) -> None:
        self.log_y = not self.log_y
        self.options_changed()

    def action_cycle_smoothing(self) -> None:
        index = SMOOTHING_STEPS.index(self.smoothing) if self.smoothing in SMOOTHING_STEPS else 0
        self.smoothing = SMOOTHING_STEPS[(index + 1) % len(SMOOTHING_STEPS)]
        self.options_changed()


class LRPane(PlotPane):
    """Best (solid) and final (dashed) metric against LR per optimizer, best LR marked, diverged runs as × at the
    top; below, the LR schedule each run actually applied."""

    BINDINGS = [
        Binding("y", "cycle_metric", "Y metric", show=True),
        Binding("l", "toggle_log_y", "Log y", show=True),
    ]
    METRIC_KEYS = ("lr",)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = "val loss"
        self.log_y = False

    def options(self) -> dict:
        return {"metric": self.metric, "log_y": self.log_y}

    def build(self, job: ViewJob) -> Text:
        return build_lr(job)

    def action_cycle_metric(self) -> None:
        self.metric = LR_METRICS[(LR_METRICS.index(self.metric) + 1) % len(LR_METRICS)]
        self.options_changed()

    def action_toggle_log_y(self) -> None:
        self.log_y = not self.log_y
        self.options_changed()


class DeadReluPane(PlotPane):
    """Dead-ReLU fraction per (run, layer) over steps, and a layers x steps heatmap per run."""

    BINDINGS = [
        Binding("h", "toggle_heatmaps_only", "Heatmaps only", show=True),
    ]
    METRIC_KEYS = ("dead/",)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heatmaps_only = False

    def options(self) -> dict:
        return {"heatmaps_only": self.heatmaps_only}

    def build(self, job: ViewJob) -> Text:
        return build_dead(job)

    def action_toggle_heatmaps_only(self) -> None:
        self.heatmaps_only = not self.heatmaps_only
        self.options_changed()
