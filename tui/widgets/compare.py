"""The Compare view: differing config keys and final metrics of the chosen runs, side by side.

It reuses `experiments.report.render_compare` (the same table as `mxdash compare`), fed from the in-memory model
instead of the database (`ModelReader`), so rendering never touches SQLite on the UI thread.
"""
from __future__ import annotations

import math

from rich.console import Group
from rich.measure import Measurement
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.widgets import Static

from experiments.report import format_duration, render_compare, run_duration

MAX_COMPARE = 12  # columns beyond this do not fit a terminal; the view says how many were left out


class ModelReader:
    """The part of the Store API `render_compare` reads (`latest_metrics`), answered from the DashboardModel."""

    def __init__(self, model) -> None:
        self.model = model

    def latest_metrics(self, run_id: str, prefix: str) -> dict[str, tuple[int, float | None]]:
        out = {}
        for key, series in sorted(self.model.series.get(run_id, {}).items()):
            if key.startswith(prefix) and len(series):
                value = float(series.value[-1])
                out[key] = (int(series.step[-1]), None if math.isnan(value) else value)
        return out


class CompareView(ScrollableContainer):
    """Shows `render_compare` for the app's plot selection (selected runs, else the current experiment).
    The table keeps its natural width and scrolls sideways when the terminal is narrower."""

    can_focus = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown_key: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-body")

    def show(self, model, run_ids: list[str], source: str, now: float | None = None) -> None:
        runs = [model.runs[rid] for rid in run_ids if rid in model.runs]
        if now is not None:  # durations of running runs count up to the app's clock
            runs = [dict(run, ended=now) if run.get("status") == "running" and run.get("started") else run
                    for run in runs]
        # Building, measuring and laying out the table costs ~30 ms on the UI thread; every switch to this tab
        # asks for it, so skip it when nothing it shows changed (run rows are replaced, not mutated, on change;
        # metric series count their versions; durations of running runs are compared as shown). The key holds
        # the row dicts and series themselves, so they compare by identity first and no id() can be reused.
        key = (source, tuple((model.runs[run["id"]],
                              tuple((k, s, s.version) for k, s in model.series.get(run["id"], {}).items()),
                              format_duration(run_duration(run)) if run.get("status") == "running" else None)
                             for run in runs[:MAX_COMPARE]), len(runs), self.app.console.width)
        if key == self._shown_key:
            return
        self._shown_key = key
        body = self.query_one("#compare-body", Static)
        if not runs:
            body.styles.width = "auto"
            body.update(Text("Nothing to compare yet: select runs in the Runs view with space (1 to go there).",
                             style="dim"))
            return
        shown = runs[:MAX_COMPARE]
        head = Text()
        head.append(f"{len(runs)} runs", style="bold")
        head.append(f"  ({source})", style="dim")
        if len(runs) > len(shown):
            head.append(f"  showing the first {len(shown)}; select fewer runs to see the others", style="yellow")
        content = Group(head, render_compare(ModelReader(model), shown))
        console = self.app.console
        natural = Measurement.get(console, console.options.update(width=4000), content).maximum
        body.styles.width = max(natural, 20)
        body.update(content)
