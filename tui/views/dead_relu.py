"""Dead ReLUs: the fraction of each layer's units that output 0 for every probe sample, over the steps.

With one run the line chart has a line per layer; with several, a line per run (or seed group: mean and band) of
the mean over its layers, named by its distinguishing config and coloured like everywhere else. Below, a layers x
steps heatmap per run on a 9-level scale (0, 5%, 10%, 15%, 20%, 30%, 50%, 75%, 100%). For leaky ReLU layers nothing
is ever exactly 0: the probe counts units stuck on the negative side for every sample, and the view says so.
Events (experiments/annotations.py: "hidden0 passed 40% dead at step 40") are marked ◆ (on the layer's line with one
run, at the top edge with several) and listed under the chart. The crosshair (left/right) reads, at the probe under
it, every shown run's layers as percentages ("step 150 │ ━ relu lr=0.2 hidden0 46.9% hidden1 3.1%"), as Curves reads
its losses.
"""
from __future__ import annotations

import re

import numpy as np
from rich.text import Text
from textual.binding import Binding

from experiments.annotations import DEAD_THRESHOLD
from experiments.metrics import DEAD_PREFIX, dead_layer, is_dead_key
from tui.model import row_json
from tui.plot import (Band, LegendEntry, Marker, PlotSeries, aggregate, color_of, heatmap_key, render_chart,
                      render_heatmap, value_at)
from tui.views.events import EVENT_MARK, dead_events, events_height, events_row
from tui.views.base import NO_RUNS_HINT, PlotView, RunData, UnitData, ViewJob, crosshair_x, hint, split_height, \
    stack, zoomed
from tui.views.readout import Reading, crosshair_readout, readout_height

STUCK = "stuck negative"


def natural_key(text: str) -> list:
    """"dead/conv10" after "dead/conv2"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def dead_layers(run: RunData) -> list[str]:
    return sorted((k for k in run.series if is_dead_key(k)), key=natural_key)


def leaky_layers(run: RunData) -> set[str]:
    """Layers whose activation is a leaky ReLU: from the net summary (`hidden0_leaky_relu` of type LeakyReLU
    after `hidden0`), else from the config (`net.activation = "leaky_relu"` applies to every layer)."""
    summary = row_json(run.row, "summary")
    found = set()
    if isinstance(summary, dict) and isinstance(summary.get("layers"), list):
        for layer in summary["layers"]:
            if isinstance(layer, dict) and "leaky" in str(layer.get("type", "")).lower():
                found.add(str(layer.get("name", "")).split("_", 1)[0])
    config = run.row.get("config")
    activation = config.get("net", {}).get("activation") if isinstance(config, dict) else None
    if not found and isinstance(activation, str) and "leaky" in activation:
        found = {dead_layer(k) for k in dead_layers(run)}
    return found


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


def layer_mean(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean dead fraction over the run's layers)."""
    layers = dead_layers(run)
    matrix, steps = dead_matrix(run, layers)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(matrix).sum(axis=0)
        means = np.where(counts > 0, np.nansum(matrix, axis=0) / np.maximum(counts, 1), np.nan)
    return steps, means


def build_dead(job: ViewJob) -> Text:
    width, height, opts = job.width, job.height, job.options
    if not job.units:
        return hint(width, height, NO_RUNS_HINT)
    probed = [(unit, [run for run in unit.runs if dead_layers(run)]) for unit in job.units if not unit.hidden]
    probed = [(unit, runs) for unit, runs in probed if runs]
    if not probed:
        return hint(width, height, "No dead-ReLU probe data for these runs (the net has no ReLU layers, or probes "
                                   "are off).")
    steps = np.concatenate([run.series[k]["step"] for _, runs in probed for run in runs for k in dead_layers(run)])
    shown_x = zoomed((float(steps.min()), float(max(steps.max(), steps.min() + 1))), job.zoom)
    label_width = min(max(len(_row_label(k, set())) for _, runs in probed for run in runs
                          for k in dead_layers(run)) + (len(" (stuck −)") if _any_leaky(probed) else 0), 22)
    single = len(probed) == 1 and len(probed[0][1]) == 1
    events = [event for unit, runs in probed for run in runs
              for event in dead_events(run, "" if single else unit.label, unit.color)]
    events_h = events_height(events, height, width)
    parts, used = [], 0
    if not opts["heatmaps_only"]:
        vline = crosshair_x(shown_x, job.crosshair)
        where, readings = dead_readings(probed, single, vline)
        label_limit = max(8, width - 4 - max((len(r.value) for r in readings), default=0))  # a run per line at most
        # the readout takes rows from the heatmaps, not the chart: the chart keeps its size when the crosshair shows
        readout_h = 0 if vline is None else min(readout_height(where, readings, width, label_limit),
                                                max(1, height // 5))
        room = height - events_h
        lines_h = split_height(room, 0.45, 6)[0] if room >= 14 else room - readout_h
        parts.append(_dead_lines(job, probed, width, lines_h, shown_x, label_width + 1, events))
        if readout_h:
            parts.append(crosshair_readout(where, readings, width, readout_h, label_limit))
        used = lines_h + readout_h
    if events_h:
        parts.append(events_row(events, width, events_h))
        used += events_h
    if used < height:
        caption = "dead" + (f" (leaky: {STUCK})" if _any_leaky(probed) else "")
        parts.append(heatmap_key(width, caption))
        used += 1
    heatmaps = [(unit, run) for unit, runs in probed for run in runs]
    for index, (unit, run) in enumerate(_most_dead_first(heatmaps)):
        layers = dead_layers(run)
        need = len(layers) + 2
        if used + need > height:
            left = len(heatmaps) - index
            if used < height:
                parts.append(hint(width, 1, f"+{left} more run{'s' * (left > 1)}: select fewer (h hides a run) or "
                                            f"press v for heatmaps only"))
            break
        leaky = leaky_layers(run)
        matrix, run_steps = dead_matrix(run, layers)
        parts.append(render_heatmap(matrix, [_row_label(k, leaky) for k in layers], width, x=run_steps,
                                    title=_heatmap_title(unit, run, layers, matrix, run_steps, leaky),
                                    x_range=shown_x, label_width=label_width))
        used += need
    return stack(parts, width, height)


def percent(value) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def probe_step(runs: list[RunData], x: float) -> float | None:
    """The latest probe at or before `x` of any of these runs (what the readout reads), None before the first."""
    found = None
    for run in runs:
        for key in dead_layers(run):
            steps = run.series[key]["step"]
            index = int(np.searchsorted(steps, x, side="right")) - 1
            if index >= 0 and (found is None or steps[index] > found):
                found = float(steps[index])
    return found


def _layer_reading(runs: list[RunData], key: str, step: float) -> float | None:
    """A layer's dead fraction at `step`: the run's probe there, the mean over a seed group's runs."""
    values = [value_at(run.series[key]["step"], run.series[key]["value"], step) for run in runs if key in run.series]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def dead_readings(probed: list, single: bool, x: float | None) -> tuple[str, list[Reading]]:
    """(`step N`, readings) of the crosshair at `x`: with one run a reading per layer (in its line's colour); with
    several one per run or seed group listing its layers ("relu lr=0.2  hidden0 46.9% hidden1 3.1%"), the deadest
    first. N is the probe read, so each value is one the store holds."""
    if x is None:
        return "", []
    step = probe_step([run for _, runs in probed for run in runs], x)
    where = f"step {x if step is None else step:.0f}"
    if step is None:
        step = -np.inf  # before the first probe: nothing to read yet
    if single:
        unit, (run,) = probed[0]
        leaky = leaky_layers(run)
        return where, [Reading(_row_label(key, leaky), index, percent(_layer_reading([run], key, step)))
                       for index, key in enumerate(dead_layers(run))]
    rows = []
    for unit, runs in probed:
        keys = sorted({key for run in runs for key in dead_layers(run)}, key=natural_key)
        values = [(dead_layer(key), _layer_reading(runs, key, step)) for key in keys]
        worst = max((v for _, v in values if v is not None), default=-1.0)
        text = " ".join(f"{layer} {percent(value)}" for layer, value in values)
        rows.append((worst, Reading(unit.label, unit.color, text, unit.focused)))
    rows.sort(key=lambda item: item[0], reverse=True)
    return where, [reading for _, reading in rows]


def _any_leaky(probed) -> bool:
    return any(leaky_layers(run) for _, runs in probed for run in runs)


def _row_label(key: str, leaky: set[str]) -> str:
    layer = dead_layer(key)
    return f"{layer} (stuck −)" if layer in leaky else layer


def _heatmap_title(unit: UnitData, run: RunData, layers: list[str], matrix: np.ndarray, steps: np.ndarray,
                   leaky: set[str]) -> str:
    """Run label plus the first time a layer went mostly dead: "the large LR killed layer 2 at step 300"."""
    title = f"{unit.label} · {run.id}"
    if leaky:
        title += f" · leaky ReLU: {STUCK}"
    mostly_dead = np.nan_to_num(matrix, nan=0.0) > 0.5
    if mostly_dead.any():
        first_col = np.where(mostly_dead.any(axis=0))[0][0]
        layer = layers[int(np.argmax(mostly_dead[:, first_col]))]
        title += f" · {dead_layer(layer)} >50% at step {steps[first_col]:g}"
    return title


def _most_dead_first(items: list) -> list:
    """Heatmaps of the runs with the deadest layer first: when not all fit, the ones worth seeing do."""
    def worst(item):
        _, run = item
        return max(float(np.nanmax(run.series[k]["value"])) if np.isfinite(run.series[k]["value"]).any() else 0.0
                   for k in dead_layers(run))
    return sorted(items, key=worst, reverse=True)


def _dead_lines(job: ViewJob, probed: list, width: int, height: int, x_range, gutter: int, events=()) -> Text:
    series, bands, entries, markers = [], [], [], []
    single = len(probed) == 1 and len(probed[0][1]) == 1
    if single:
        unit, (run,) = probed[0]
        leaky = leaky_layers(run)
        for index, key in enumerate(dead_layers(run)):
            arrays = run.series[key]
            series.append(PlotSeries(arrays["step"], arrays["value"], color=index, legend=False))
            entries.append(LegendEntry("━", color_of(index, index), _row_label(key, leaky)))
            for event in events:  # on the layer's own line, in its colour
                if event.annotation.key == key:
                    at = int(np.searchsorted(arrays["step"], event.annotation.step))
                    value = float(arrays["value"][min(at, len(arrays["value"]) - 1)])
                    markers.append(Marker(float(event.annotation.step), value, EVENT_MARK, index))
                    event.color = index
        title = f"dead ReLU fraction per layer · {unit.label}"
    else:
        for unit, runs in probed:
            curves = [layer_mean(run) for run in runs]
            if len(curves) > 1:
                gx, mean, lo, hi = aggregate(curves, 4 * width)
                bands.append(Band(gx, lo, hi, unit.color))
                curve = (gx, mean)
            else:
                curve = curves[0]
            series.append(PlotSeries(*curve, color=unit.color, legend=False, emphasis=unit.focused))
            leaky = any(leaky_layers(run) for run in runs)
            entries.append(LegendEntry("━", color_of(unit.color, 0), unit.label + (f" ({STUCK})" if leaky else ""),
                                       unit.focused))
        title = "dead ReLU fraction, mean over layers" + (f" · {job.title}" if job.title else "")
        # the line is a mean over layers: a layer's event goes on the top edge, at its step
        markers = [Marker(float(e.annotation.step), float("inf"), EVENT_MARK, e.color) for e in events]
    if markers:
        entries.append(LegendEntry(EVENT_MARK, "bold", f"passed {DEAD_THRESHOLD:.0%} dead"))
    top = _top(series, bands)
    vline = crosshair_x(x_range, job.crosshair)
    return render_chart(series, width, height, title=title, x_label="step", y_range=(0.0, top), x_range=x_range,
                        bands=bands, legend=entries, min_gutter=gutter, vline=vline, markers=markers)


def _top(series: list[PlotSeries], bands: list[Band]) -> float:
    """The fractions' own range (a 5% dead layer should not be a flat line on a 0..100% axis), up to 1."""
    values = [s.y[np.isfinite(s.y)] for s in series] + [b.hi[np.isfinite(b.hi)] for b in bands]
    values = [v for v in values if v.size]
    peak = max((float(v.max()) for v in values), default=0.0)
    return float(min(1.0, max(0.05, peak * 1.15)))


class DeadReluView(PlotView):
    """Dead-ReLU fraction per run (or layer) over steps, and a layers x steps heatmap per run."""

    BINDINGS = [
        Binding("v", "toggle_heatmaps_only", "Heatmaps only"),
    ]
    METRIC_KEYS = (DEAD_PREFIX,)

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


__all__ = ["DeadReluView", "build_dead", "dead_layers", "dead_matrix", "leaky_layers"]
