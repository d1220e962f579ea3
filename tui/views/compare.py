"""Compare: the plotted runs side by side, one column per run headed by its run id: the config keys that differ,
status, final and best metrics (the best of each row highlighted), each layer's final dead fraction, steps, time.

A DataTable with the label column fixed: left/right move across runs and the table scrolls, so every run is
reachable at 80x24 (the old static table cut the fifth column there and showed only the first 12 runs).
"""
from __future__ import annotations

import math

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from experiments.metrics import DEAD_PREFIX, VAL_MACRO_F1, display_status
from experiments.report import (BEST_STYLE, MISSING, differing_config, format_duration, format_number,
                                format_percent, run_duration)
from tui.grouping import flat_of, varying_keys
from tui.grouping import format_value as short_value
from tui.status import status_text
from tui.views.runs.columns import format_params, total_params

MAX_COMPARE = 500  # columns; beyond this the view says how many were left out
VALUE_WIDTH = 16


def final_dead(model, run_id: str) -> dict[str, float | None]:
    """The latest dead/<layer> value of each probed layer of a run, from the model's series."""
    out = {}
    for key, series in sorted(model.series.get(run_id, {}).items()):
        if key.startswith(DEAD_PREFIX) and len(series):
            value = float(series.value[-1])
            out[key] = None if math.isnan(value) else value
    return out


def compare_rows(model, runs: list[dict], now: float) -> list[tuple[str, list[Text]]]:
    """(label, one cell per run) rows of the comparison."""
    rows: list[tuple[str, list[Text]]] = []
    keys = set(varying_keys([flat_of(run) for run in runs]))  # not keys only some optimizers have (beta1, rho)
    for key, values in differing_config(runs):
        if key in keys:
            rows.append((key, [Text(short_value(v)) for v in values]))
    rows.append(("status", [status_text(display_status(run, now)) for run in runs]))
    rows.append(_metric_row("final train loss", [run.get("train_loss") for run in runs], format_number, min))
    rows.append(_metric_row("best val loss", [run.get("best_val_loss") for run in runs], format_number, min))
    rows.append(_metric_row("best val acc", [run.get("best_val_acc") for run in runs], format_percent, max))
    f1 = [_last(model, run["id"], VAL_MACRO_F1) for run in runs]
    if any(value is not None for value in f1):  # per-class F1 averaged: a class the net ignores pulls it down
        rows.append(_metric_row("val macro F1", f1, lambda v: format_number(v, ".4f"), max))
    params = [total_params(run) for run in runs]
    if any(value is not None for value in params):
        rows.append(("params", [Text(format_params(value)) for value in params]))
    dead = [final_dead(model, run["id"]) for run in runs]
    for key in sorted(set().union(*dead)):
        # fewer dead units is better: the lowest final fraction is highlighted
        rows.append(_metric_row(f"final {key}", [layers.get(key) for layers in dead], format_percent, min))
    rows.append(("steps", [Text(str(run.get("step") or 0)) for run in runs]))
    rows.append(("duration", [Text(format_duration(run_duration(run, now))) for run in runs]))
    return rows


def compare_title(source: str, count: int) -> str:
    """What is compared, said once: the plots' own title of the runs ("4 runs the filter shows", "first 500 of 900
    runs selected (…)"), whose selection form "3 selected" gets its noun here ("3 selected runs")."""
    if not source:
        return f"{count} run{'s' * (count != 1)}"
    if source.endswith(" selected"):
        return f"{source} run{'s' * (source != '1 selected')}"
    return source


def _last(model, run_id: str, key: str) -> float | None:
    series = model.series.get(run_id, {}).get(key)
    return series.last() if series is not None else None


def _metric_row(label: str, values: list, fmt, best) -> tuple[str, list[Text]]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    best_value = best(finite) if len(values) > 1 and finite else None
    return label, [Text(fmt(v), style=BEST_STYLE if best_value is not None and v == best_value else "")
                   for v in values]


class CompareView(Vertical):
    """A head line saying which runs these are, and the comparison table."""

    can_focus = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown_key: tuple | None = None
        self._headers: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-head")
        yield DataTable(id="compare-table", fixed_columns=1, cursor_type="column", zebra_stripes=True)

    def run_headers(self) -> list[str]:
        return list(self._headers)

    def focus(self, scroll_visible: bool = True):
        self.query_one("#compare-table", DataTable).focus(scroll_visible)
        return self

    def show(self, model, run_ids: list[str], source: str, now: float) -> None:
        runs = [model.runs[rid] for rid in run_ids if rid in model.runs]
        # Rebuilding the table costs ~10-30 ms on the UI thread and every switch to this tab asks for it: skip it
        # when nothing it shows changed (run rows are replaced, not mutated, on change; series count versions).
        key = (source, tuple((model.runs[run["id"]],
                              tuple((k, s.version) for k, s in model.series.get(run["id"], {}).items()
                                    if k.startswith(DEAD_PREFIX) or k == VAL_MACRO_F1),
                              format_duration(run_duration(run, now)) if run.get("status") == "running" else None)
                             for run in runs[:MAX_COMPARE]), len(runs))
        if key == self._shown_key:
            return
        self._shown_key = key
        head = self.query_one("#compare-head", Static)
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        self._headers = []
        if not runs:
            head.update(Text("Nothing to compare yet: select runs in the Runs view with space (1 to go there), or "
                             "filter it to the runs you want.", style="dim"))
            return
        shown = runs[:MAX_COMPARE]
        text = Text()
        text.append(compare_title(source, len(runs)), style="bold")
        text.append("  ←→ move across runs", style="dim")
        if len(runs) > len(shown):
            text.append(f"  showing the first {len(shown)}: select fewer to see the others", style="yellow")
        head.update(text)
        rows = compare_rows(model, shown, now)
        label_width = min(28, max(len(label) for label, _ in rows))
        table.add_column("", key="label", width=label_width)
        for index, run in enumerate(shown):  # as wide as its id or its widest value (a short id cut "momentum")
            width = min(VALUE_WIDTH, max([len(run["id"]), 6] + [cell_len(cells[index].plain) for _, cells in rows]))
            table.add_column(Text(run["id"], justify="right"), key=run["id"], width=width)
            self._headers.append(run["id"])
        for label, cells in rows:
            for cell in cells:
                cell.justify = "right"
            table.add_row(Text(label, style="bold"), *cells)


__all__ = ["CompareView", "compare_rows", "compare_title", "MISSING"]
