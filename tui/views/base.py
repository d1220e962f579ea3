"""The base of the plot views (Curves, LR effects, Dead ReLUs): change detection, the off-thread render, the
crosshair and zoom, and the keys every plot view shares.

Data flow: the main screen calls `update_view(model, plan, changed)` after every poll and whenever the plan (runs,
groups, colours, legend state) changes. On the UI thread the view only decides, cheaply, whether anything it shows
changed; if so it snapshots references to the arrays it needs into a `ViewJob` and a thread worker builds the Rich
Text (`build`, a pure function of the job: tested without Textual) and posts `Rendered`. Legend, colour and band
keys post messages to the app, which owns that state (it must be the same in every tab).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

from experiments.metrics import DIVERGED
from tui._textual_hacks import PrerenderedStatic
from tui.grouping import PlotPlan
from tui.model import row_json
from tui.plot import HINT_STYLE, blank_text, truncate

ROW_FIELDS = ("status", "optimizer", "lr", "experiment_id", "diverged_step", "started", "best_val_loss", "val_loss",
              "train_loss", "best_val_acc", "val_acc", "summary", "config", "kind", "step")
NO_RUNS_HINT = "No runs to plot: select runs in the Runs tab (space), or widen the filter there (1)."
ZOOM_FACTOR = 2.0
MIN_ZOOM_SPAN = 1 / 64  # of the full x range
CROSSHAIR_STEPS = 160  # left/right moves the crosshair by 1/160 of the shown range; shift by 10x that


# -- what a builder gets ----------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """One run: its row fields and metric arrays by key ({step, epoch, wall, value}). The arrays are the model's
    views (no copies): the model only writes past their end, except when a resumed run rewinds."""
    id: str
    row: dict
    series: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    artifacts: dict[str, list] = field(default_factory=dict)  # key -> tui.artifacts.Artifact list, oldest first


@dataclass
class UnitData:
    """One legend entry and line: a run or a seed group."""
    id: str
    label: str
    color: int
    runs: list[RunData]
    hidden: bool = False
    focused: bool = False

    @property
    def aggregated(self) -> bool:
        return len(self.runs) > 1


@dataclass
class ViewJob:
    width: int
    height: int
    options: dict
    units: list[UnitData]
    title: str = ""
    note: str = ""
    color_key: str = ""
    crosshair: Optional[float] = None  # fraction of the shown x range, or None
    zoom: tuple[float, float] = (0.0, 1.0)  # the shown part of the full x range, as fractions
    optimizer_colors: dict = field(default_factory=dict)  # optimizer name -> palette index (the same in every tab)


def hint(width: int, height: int, message: str) -> Text:
    return blank_text(width, height, truncate(message, width), HINT_STYLE)


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


def split_height(height: int, first_share: float, minimum_second: int) -> tuple[int, int]:
    """Heights of two stacked charts; the second is dropped (0) when it would be too short to read."""
    second = max(minimum_second, int(round(height * (1 - first_share))))
    if height - second < 6:
        return height, 0
    return height - second, second


def zoomed(full: Optional[tuple[float, float]], zoom: tuple[float, float], log: bool = False,
           ) -> Optional[tuple[float, float]]:
    """The shown x range: the `zoom` fractions of the `full` range (in log units on a log axis)."""
    if full is None or zoom == (0.0, 1.0):
        return full
    lo, hi = full
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    a, b = lo + (hi - lo) * zoom[0], lo + (hi - lo) * zoom[1]
    return (10 ** a, 10 ** b) if log else (a, b)


def crosshair_x(shown: Optional[tuple[float, float]], fraction: Optional[float], log: bool = False,
                ) -> Optional[float]:
    if shown is None or fraction is None:
        return None
    lo, hi = shown
    if log:
        return 10 ** (math.log10(lo) + (math.log10(hi) - math.log10(lo)) * fraction)
    return lo + (hi - lo) * fraction


def is_diverged(row: dict) -> bool:
    return row.get("status") == DIVERGED or row.get("diverged_step") is not None


def chance_loss(units: Sequence[UnitData]) -> Optional[float]:
    """ln(classes) of a classifier: the loss of a net that learned nothing (from the output layer in the net
    summary); None when the runs do not all say the same."""
    found = set()
    for unit in units:
        for run in unit.runs:
            summary = row_json(run.row, "summary")
            layers = summary.get("layers") if isinstance(summary, dict) else None
            shape = layers[-1].get("output_shape") if isinstance(layers, list) and layers else None
            if isinstance(shape, list) and shape and isinstance(shape[-1], int) and shape[-1] > 1:
                found.add(shape[-1])
    return math.log(found.pop()) if len(found) == 1 else None


def format_reading(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


# -- the widget ---------------------------------------------------------------------------------------------------------
class PlotView(PrerenderedStatic, can_focus=True):
    """Base of the plot views. Subclasses set METRIC_KEYS, OPTIONS_HELP and implement `options()` and `build()`."""

    DEFAULT_CSS = """
    PlotView {
        width: 1fr;
        height: 1fr;
    }
    """
    BINDINGS = [
        Binding("left", "crosshair(-1)", "Crosshair ←", show=False),
        Binding("right", "crosshair(1)", "Crosshair →", key_display="←→"),
        Binding("shift+left", "crosshair(-10)", "Crosshair ← x10", show=False),
        Binding("shift+right", "crosshair(10)", "Crosshair → x10", show=False),
        Binding("left_square_bracket", "zoom_in", "Zoom in", key_display="["),
        Binding("right_square_bracket", "zoom_out", "Zoom out", key_display="]"),
        Binding("up", "legend(-1)", "Legend ↑", show=False),
        Binding("down", "legend(1)", "Legend ↓", show=False),
        Binding("h", "toggle_hidden", "Hide/show run", show=False),
        Binding("H", "show_all", "Show all runs", show=False),
        Binding("g", "cycle_color_key", "Colour by"),
        Binding("b", "toggle_bands", "Seed bands", show=False),
        Binding("escape", "crosshair_off", "Crosshair off", show=False),
    ]
    METRIC_KEYS: tuple[str, ...] = ()  # series keys the view draws (prefixes end with "/")
    ARTIFACT_KEYS: tuple[str, ...] = ()  # artifact keys it draws (the app asks the poller for them)

    class Rendered(Message):
        """A render worker finished: `text` for render number `generation`, and what `prerender` made of it."""

        def __init__(self, generation: int, text: Text, made=None, size=None, style=None) -> None:
            super().__init__()
            self.generation, self.text, self.made, self.size, self.style = generation, text, made, size, style

    class LegendMoved(Message):
        def __init__(self, delta: int) -> None:
            super().__init__()
            self.delta = delta

    class LegendToggled(Message):
        """Hide or show the run (or seed group) the legend cursor is on."""

    class LegendShowAll(Message):
        pass

    class ColorKeyCycled(Message):
        pass

    class BandsToggled(Message):
        pass

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.model = None
        self.plan = PlotPlan()
        self.crosshair: Optional[float] = None
        self.zoom: tuple[float, float] = (0.0, 1.0)
        self.render_count = 0  # render workers started (tests and debugging)
        self._generation = 0
        self._last_key: Optional[tuple] = None
        self._in_flight = False
        self._pending = False

    # -- what subclasses provide ----------------------------------------------------------------------------------
    def options(self) -> dict:
        return {}

    def build(self, job: ViewJob) -> Text:
        raise NotImplementedError

    def wanted_keys(self, run_id: str) -> list[str]:
        present = self.model.series.get(run_id, {}) if self.model is not None else {}
        wanted = []
        for key in self.METRIC_KEYS:
            if key.endswith("/"):
                wanted.extend(k for k in present if k.startswith(key))
            elif key in present:
                wanted.append(key)
        return wanted

    # -- change detection (UI thread, cheap) ----------------------------------------------------------------------
    @property
    def run_ids(self) -> list[str]:
        return [rid for unit in self.plan.units for rid in unit.run_ids]

    def update_view(self, model, plan: PlotPlan, changed: set[str]) -> None:
        """New data or a new plan. Starts a render only if something this view shows changed."""
        if model is self.model and plan == self.plan and not (set(changed) & set(self.run_ids)):
            return
        self.model, self.plan = model, plan
        self.request_render()

    def render_key(self) -> tuple:
        rows, data = [], []
        for rid in self.run_ids:
            run = self.model.runs.get(rid)
            rows.append(None if run is None else tuple(id(run.get(name)) if name in ("summary", "config")
                                                       else run.get(name) for name in ROW_FIELDS))
            per_run = self.model.series.get(rid, {})
            data.append(tuple((key, _signature(per_run.get(key))) for key in self.wanted_keys(rid)))
            logs = self.model.artifacts.get(rid, {})
            data.append(tuple((key, id(logs[key]), logs[key].version) for key in self.ARTIFACT_KEYS if key in logs))
        size = self.content_size
        plan = tuple((u.id, tuple(u.run_ids), u.label, u.color, u.hidden, u.focused) for u in self.plan.units)
        return (plan, self.plan.title, self.plan.note, tuple(sorted(self.options().items())), self.crosshair,
                self.zoom, (size.width, size.height), tuple(rows), tuple(data),
                tuple(sorted(self.plan.optimizer_colors.items())))

    def request_render(self) -> None:
        """Start a render if what the view would show changed. One at a time: a request during a render is served
        when it finishes (thread workers cannot be stopped; overlapping renders would only compete for the CPU)."""
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
        job = ViewJob(size.width, size.height, self.options(), self.snapshot(), self.plan.title, self.plan.note,
                      self.plan.color_key, self.crosshair, self.zoom, dict(self.plan.optimizer_colors))
        self._generation += 1
        self.render_count += 1
        self._in_flight = True
        self._render_in_thread(job, self._generation, self.size, self.visual_style, self.app.console)

    def snapshot(self) -> list[UnitData]:
        """References (no copies) to the rows and series of the plan's runs."""
        model, units = self.model, []
        for unit in self.plan.units:
            runs = []
            for rid in unit.run_ids:
                row = model.runs.get(rid)
                if row is None:
                    continue
                data = RunData(rid, {name: row.get(name) for name in ROW_FIELDS})
                per_run = model.series.get(rid, {})
                for key in self.wanted_keys(rid):
                    series = per_run.get(key)
                    if series is not None and len(series.value):
                        data.series[key] = {"step": series.step, "epoch": series.epoch, "wall": series.wall,
                                            "value": series.value}
                logs = model.artifacts.get(rid, {})
                for key in self.ARTIFACT_KEYS:
                    if key in logs and logs[key].items:
                        data.artifacts[key] = list(logs[key].items)  # a copy: the poll appends to the log
                runs.append(data)
            if runs:
                units.append(UnitData(unit.id, unit.label, unit.color, runs, unit.hidden, unit.focused))
        return units

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
        except Exception as error:  # a plotting bug must not take the dashboard down: show it in the view
            text = hint(job.width, job.height, f"plot error: {type(error).__name__}: {error}")
        made = self.prerender(text, size, style, console) if size is not None and console is not None else None
        if not worker.is_cancelled:
            self.post_message(self.Rendered(generation, text, made, size, style))

    def on_plot_view_rendered(self, message: Rendered) -> None:
        message.stop()
        if message.generation == self._generation:  # an older render finishing late is dropped
            self.show_prerendered(message.text, message.made, message.size, message.style)
        self._render_finished()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "plot-render" and event.state in (WorkerState.CANCELLED, WorkerState.ERROR):
            self._render_finished()  # no Rendered message will come

    def _render_finished(self) -> None:
        self._in_flight = False
        if self._pending:
            self._pending = False
            self.request_render()

    # -- keys -----------------------------------------------------------------------------------------------------
    def action_crosshair(self, steps: int) -> None:
        start = 0.5 if self.crosshair is None else self.crosshair
        self.crosshair = min(1.0, max(0.0, start + steps / CROSSHAIR_STEPS)) if self.crosshair is not None else start
        self.options_changed()

    def action_crosshair_off(self) -> None:
        if self.crosshair is not None:
            self.crosshair = None
            self.options_changed()

    def action_zoom_in(self) -> None:
        lo, hi = self.zoom
        span = hi - lo
        if span / ZOOM_FACTOR < MIN_ZOOM_SPAN:
            return
        center = lo + span * (0.5 if self.crosshair is None else self.crosshair)
        new = span / ZOOM_FACTOR
        lo = min(max(0.0, center - new / 2), 1.0 - new)
        if self.crosshair is not None:  # keep the crosshair on the same x
            self.crosshair = (center - lo) / new
        self.zoom = (lo, lo + new)
        self.options_changed()

    def action_zoom_out(self) -> None:
        lo, hi = self.zoom
        if (lo, hi) == (0.0, 1.0):
            return
        span = min(1.0, (hi - lo) * ZOOM_FACTOR)
        center = lo + (hi - lo) * (0.5 if self.crosshair is None else self.crosshair)
        new_lo = min(max(0.0, center - span / 2), 1.0 - span)
        if self.crosshair is not None:
            self.crosshair = (center - new_lo) / span
        self.zoom = (0.0, 1.0) if span >= 1.0 else (new_lo, new_lo + span)
        self.options_changed()

    def action_legend(self, delta: int) -> None:
        self.post_message(self.LegendMoved(delta))

    def action_toggle_hidden(self) -> None:
        self.post_message(self.LegendToggled())

    def action_show_all(self) -> None:
        self.post_message(self.LegendShowAll())

    def action_cycle_color_key(self) -> None:
        self.post_message(self.ColorKeyCycled())

    def action_toggle_bands(self) -> None:
        self.post_message(self.BandsToggled())


def _signature(series) -> tuple:
    """Cheap change detector for a MetricSeries: identity, version, length, last step."""
    if series is None:
        return (None,)
    n = len(series.value)
    return id(series), getattr(series, "version", None), n, float(series.step[-1]) if n else None
