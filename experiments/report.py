"""Rich renderables for `mxdash show`, `compare` and `ls`, plus helpers the dashboard reuses (status_style, sparkline).

Reads only the run store; imports no mxnet or textual. Every string that comes from a run (config values, errors,
log lines) goes into a `Text`, never into markup, so brackets in it print as they are.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from experiments.metrics import LR, LRFIND_KIND, SMOOTHED_LOSS, TRAIN_LOSS, VAL_ACC, VAL_LOSS, VAL_MACRO_F1

BLOCKS = "▁▂▃▄▅▆▇█"
NO_DATA_BLOCK = "×"  # a bucket holding only NaN/inf (a diverged loss): visible, unlike a gap
MISSING = "—"
BEST_STYLE = "bold green"
LOG_TAIL_LINES = 15
SPARK_WIDTH = 60
STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "queued": "dim",
    "diverged": "dark_orange",
    "failed": "red",
    "lost": "magenta",
    "stopped": "blue",
    "stale": "yellow",
}


# -- small formatting helpers ----------------------------------------------------------------------------------------
def status_style(status: str | None) -> str:
    """Rich style of a run status (the dashboard colours its status column with the same styles)."""
    return STATUS_STYLES.get(status or "", "")


def status_text(status: str | None) -> Text:
    return Text(status or MISSING, style=status_style(status))


def format_duration(seconds: float | None) -> str:
    """42s, 3m 05s, 2h 03m, 1d 04h; "—" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 10:  # short runs (a digits MLP trains in about a second) deserve a decimal
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def run_duration(run: dict, now: float | None = None) -> float | None:
    """Seconds from start to end; a run still going counts up to now. None when it never started."""
    started = run.get("started")
    if not started:
        return None
    ended = run.get("ended")
    if ended is None and run.get("status") == "running":
        ended = now or time.time()
    return None if ended is None else ended - started


def format_time(timestamp: float | None) -> str:
    if not timestamp:
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def keeps_digits(value, text: str) -> bool:
    """Whether a fixed-point `text` of `value` still says the number: two significant digits, or an exact zero (a
    fitted spiral's loss of 1.7e-5 reads 0.0000 at `.4f`, as if it were zero)."""
    return value == 0 or len(text.lstrip("-0.").replace(".", "")) >= 2


def format_number(value, fmt: str = ".4g") -> str:
    """Metric values: "—" when absent (SQLite stores NaN as NULL), else formatted."""
    if value is None:
        return MISSING
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def format_percent(value) -> str:
    return format_number(value, ".2%")


def format_value(value) -> str:
    """Config values: JSON-ish (lists, strings in quotes only when nested), "—" for a missing key."""
    if value is MISSING:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


# -- config ----------------------------------------------------------------------------------------------------------
def flat_config(config: dict, prefix: str = "") -> dict:
    """Nested dicts flattened to dotted keys: {"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}.
    Lists and empty dicts are kept as values (a list of hidden sizes is one hyperparameter)."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def differing_config(runs: list[dict]) -> list[tuple[str, list]]:
    """(dotted key, [value per run]) for every config key whose values are not all equal; a key missing in some
    run differs, and its value there is "—". Keys keep the order they first appear in (config section order)."""
    flats = [flat_config(run.get("config") or {}) for run in runs]
    keys = dict.fromkeys(key for flat in flats for key in flat)
    differing = []
    for key in keys:
        values = [flat.get(key, MISSING) for flat in flats]
        # Compare JSON forms so 1 and True (equal in Python) still count as different settings.
        if len({json.dumps(value, sort_keys=True, default=str) for value in values}) > 1:
            differing.append((key, values))
    return differing


# -- sparkline -------------------------------------------------------------------------------------------------------
def sparkline(values, width: int, log: bool = False) -> str:
    """`values` drawn as exactly `width` unicode blocks. Longer series are downsampled by bucket means, shorter
    ones stretched. NaN/None/inf are left out of the means; a bucket with nothing finite shows "×". A constant series
    draws a flat middle line. `log` scales by log10 (buckets with a non-positive mean count as not finite)."""
    if width <= 0:
        return ""
    data = np.array([math.nan if value is None else value for value in values], dtype=float)
    if data.size == 0:
        return " " * width
    means = _bucket_means(data, width)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(means > 0, np.log10(means), np.nan)
    finite = np.isfinite(means)
    if not finite.any():
        return NO_DATA_BLOCK * width
    low, high = means[finite].min(), means[finite].max()
    top = len(BLOCKS) - 1
    if high - low <= 1e-12 * max(abs(low), abs(high), 1e-300):
        levels = np.full(width, top // 2)  # a flat middle line: the floor would read as "at the minimum"
    else:
        with np.errstate(invalid="ignore"):
            levels = np.clip(np.round((means - low) / (high - low) * top), 0, top)
    return "".join(BLOCKS[int(level)] if ok else NO_DATA_BLOCK for level, ok in zip(levels, finite))


def _bucket_means(data: np.ndarray, width: int) -> np.ndarray:
    """Mean of the finite values in each of `width` equal index buckets (NaN where a bucket has none).
    When there are fewer values than buckets, a bucket takes the value under it."""
    n = data.size
    finite = np.isfinite(data)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, data, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    edges = np.arange(width + 1) * n // width
    starts = edges[:-1]
    ends = np.maximum(edges[1:], starts + 1)
    starts = np.minimum(starts, n - 1)
    ends = np.minimum(ends, n)
    count = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (sums[ends] - sums[starts]) / np.maximum(count, 1), np.nan)


def finite_range(values) -> tuple[float, float] | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (min(finite), max(finite)) if finite else None


# -- show ------------------------------------------------------------------------------------------------------------
def render_show(store, run: dict, width: int = 120) -> Group:
    """Everything about one run: header, config, metrics, problems, events, LR range test, confusion matrix,
    decision boundary, sparklines, log tail."""
    from experiments import lesson_views

    lrfind = run.get("kind") == LRFIND_KIND
    parts = [_show_header(run), _show_config(run.get("config") or {})]
    if not lrfind:  # a range test has no validation: its own section says what it found
        parts.append(_show_metrics(run))
    problem = _show_problem(run)
    if problem is not None:
        parts.append(problem)
    parts.extend(lesson_views.show_sections(store, run, width))
    parts.append(_show_sparklines(store, run, width))
    log_tail = _show_log_tail(store.log_path(run["id"]))
    if log_tail is not None:
        parts.append(log_tail)
    return Group(*parts)


def _show_header(run: dict) -> Group:
    from experiments.metrics import STALE, display_status

    now = time.time()
    shown = display_status(run, now)
    title = Text.assemble((run["id"], "bold"), "  ", (run.get("experiment_id") or "", ""), "  ", status_text(shown))
    if shown == STALE:  # alive but not advancing: say for how long, and what the heartbeat says
        beat = run.get("heartbeat")
        since = run.get("progress_at") or run.get("started")
        title.append(f"  no progress for {format_duration(now - since)}"
                     + (f", heartbeat {format_duration(now - beat)} ago" if beat else ""), style="yellow")
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim")
    info.add_column()
    versions = run.get("versions") or {}
    summary = run.get("summary") or {}
    fields = [
        ("host", run.get("host")), ("device", run.get("device")), ("pid", run.get("pid")),
        ("started", format_time(run.get("started"))), ("ended", format_time(run.get("ended"))),
        ("duration", format_duration(run_duration(run))),
        ("versions", ", ".join(f"{name} {version}" for name, version in versions.items())),
        ("git commit", run.get("git_commit")),
        ("params", f"{summary['total_params']:,}" if isinstance(summary.get("total_params"), int) else None),
    ]
    for name, value in fields:
        info.add_row(name, Text(MISSING if value in (None, "") else str(value)))
    return Group(title, info)


def _show_config(config: dict) -> Table:
    table = Table(title="config", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(style="dim")
    table.add_column()
    for section, body in config.items():
        items = flat_config(body).items() if isinstance(body, dict) else [("", body)]
        for i, (key, value) in enumerate(items):
            table.add_row(section if i == 0 else "", Text(key), Text(format_value(value)))
    return table


def _show_metrics(run: dict) -> Table:
    table = Table(title="metrics", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    steps = f"{run.get('step') or 0}" + (f" / {run['total_steps']}" if run.get("total_steps") else "")
    epochs = f"{format_number(run.get('epoch'), '.2f')}" + (f" / {run['epochs']}" if run.get("epochs") else "")
    rows = [
        ("final train loss", format_number(run.get("train_loss"))),
        ("final val loss", format_number(run.get("val_loss"))),
        ("best val loss", format_number(run.get("best_val_loss"))),
        ("final val acc", format_percent(run.get("val_acc"))),
        ("best val acc", format_percent(run.get("best_val_acc"))),
        ("samples/s", format_number(run.get("samples_per_s"), ",.0f")),
        ("steps", steps),
        ("epochs", epochs),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _show_problem(run: dict) -> Group | None:
    parts = []
    if run.get("diverged_step") is not None:
        parts.append(Text(f"diverged at step {run['diverged_step']}", style="bold dark_orange"))
    if run.get("error"):
        parts.append(Text.assemble(("error: ", "bold red"), (run["error"], "red")))
    if run.get("traceback"):
        parts.append(Text(run["traceback"].rstrip(), style="red"))
    return Group(*parts) if parts else None


def _show_sparklines(store, run: dict, width: int = 120) -> Table:
    """train_loss, val_loss, val_acc, val macro F1 and every dead/<layer> series (an LR range test: loss, smoothed
    loss and LR per step), fetched in one pass over the run's metrics."""
    keys = [TRAIN_LOSS, SMOOTHED_LOSS, LR] if run.get("kind") == LRFIND_KIND else [TRAIN_LOSS, VAL_LOSS, VAL_ACC,
                                                                                 VAL_MACRO_F1]
    keys += sorted(key for key in store.metric_keys(run["id"]) if key.startswith("dead/"))
    series: dict[str, list] = {key: [] for key in keys}
    for _id, _step, _epoch, _wall, key, value in store.metrics_since(run["id"], keys=keys):
        series[key].append(value)
    table = Table(title="curves", title_justify="left", show_header=False, box=None, padding=(0, 1))
    label_width = max(len(key) for key in keys)
    # the rest of the row (bounds, last value, padding) takes ~48 cells; the sparkline gets what is left
    spark_width = max(8, min(SPARK_WIDTH, width - label_width - 48))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="dim", no_wrap=True)
    for key in keys:
        values = series[key]
        bounds = finite_range(values)
        if bounds is None:
            table.add_row(key, "", Text("no data", style="dim"), "", "")
            continue
        low, high = bounds
        table.add_row(key, format_number(low), sparkline(values, spark_width, log=key == LR), format_number(high),
                      f"last {format_number(values[-1])}  ({len(values)} pts)")
    return table


def _show_log_tail(path: Path) -> Group | None:
    lines = tail_lines(path, LOG_TAIL_LINES)
    if lines is None:
        return None
    return Group(Text(f"log  {path}", style="bold"), Text("\n".join(lines), style="dim"))


def tail_lines(path: Path, count: int, block: int = 8192) -> list[str] | None:
    """The last `count` lines of a text file, reading backwards from its end (logs can be large); None if absent."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            position, data = f.tell(), b""
            while position > 0 and data.count(b"\n") <= count:
                step = min(block, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except OSError:
        return None
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


# -- compare ---------------------------------------------------------------------------------------------------------
SHORT_LABELS = {"final train loss": "loss", "best val loss": "best vloss", "best val acc": "best acc",
                "final macro F1": "F1", "suggested lr": "sugg. lr", "duration": "time"}


def render_compare(store, runs: list[dict], weights: bool = False, console=None) -> Table:
    """The config keys that differ, then outcome rows with the best value in each highlighted. One column per run
    (run ids as headers) when that fits the console; else one row per run, so 100 runs still read (columns of
    100 runs collapsed to nothing). `weights`: a row of parameter counts."""
    rows, outcomes_from = compare_rows(store, runs, weights)
    experiments = {run.get("experiment_id") for run in runs}
    shared = experiments.pop() if len(experiments) == 1 else None
    title = f"compare {shared or ''}"
    wide = Table(title=title, title_justify="left")
    wide.add_column("", style="bold", no_wrap=True, min_width=min(28, max(len(label) for label, _ in rows)))
    for run in runs:
        wide.add_column(Text(run["id"]), justify="right", no_wrap=True)
    for i, (label, cells) in enumerate(rows):
        if i == outcomes_from:
            wide.add_section()
        wide.add_row(Text(label), *cells)
    if console is None:
        return wide
    from rich.measure import Measurement

    if Measurement.get(console, console.options.update(width=10_000), wide).maximum <= console.width:  # none cut
        return wide
    # one row per run; columns that do not fit go, least telling first, so no value is ever cut
    drop_order = ["steps", "best val loss", "duration", "params", "suggested lr"]
    drop_order += [label for label, _ in rows if label.startswith("final dead/")] + ["final macro F1"]
    kept = list(rows)
    while True:
        long = _compare_long(title, runs, kept)
        if Measurement.get(console, console.options.update(width=10_000), long).maximum <= console.width:
            return long
        droppable = [label for label in drop_order if any(label == k for k, _ in kept)]
        if not droppable:
            return long
        kept = [(label, cells) for label, cells in kept if label != droppable[0]]


def _compare_long(title: str, runs: list[dict], rows: list[tuple[str, list[Text]]]) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    table.add_column("run", no_wrap=True)
    for label, cells in rows:
        short = SHORT_LABELS.get(label) or (label.replace("final dead/", "dead ") if label.startswith("final dead/")
                                            else label.split(".")[0] if label.endswith(".name")  # optimizer.name
                                            else label.split(".")[-1])
        table.add_column(Text(short), justify="right", no_wrap=True,
                         min_width=max([len(short)] + [len(cell.plain) for cell in cells]))
    for j, run in enumerate(runs):
        table.add_row(Text(run["id"]), *(cells[j] for _, cells in rows))
    return table


def compare_rows(store, runs: list[dict], weights: bool = False) -> tuple[list[tuple[str, list[Text]]], int]:
    """(label, one cell per run) rows of a comparison, and the index where the outcome rows start."""
    from experiments.lesson_views import total_params

    rows: list[tuple[str, list[Text]]] = []
    for key, values in differing_config(runs):
        rows.append((key, [Text(format_value(value)) for value in values]))
    outcomes_from = len(rows)
    rows.append(("status", [status_text(run.get("status")) for run in runs]))
    if weights:
        rows.append(_metric_row("params", [total_params(run) for run in runs], lambda v: format_number(v, ","), None))
    if any(run.get("kind") == LRFIND_KIND for run in runs):  # a range test's lr is its suggestion
        rows.append(("suggested lr", [Text(format_number(run.get("lr"), ".3g") if run.get("kind") == LRFIND_KIND
                                           else MISSING) for run in runs]))
    rows.append(_metric_row("final train loss", [run.get("train_loss") for run in runs], format_number, min))
    rows.append(_metric_row("best val loss", [run.get("best_val_loss") for run in runs], format_number, min))
    rows.append(_metric_row("best val acc", [run.get("best_val_acc") for run in runs], format_percent, max))
    macro_f1 = [store.latest_metrics(run["id"], VAL_MACRO_F1).get(VAL_MACRO_F1, (None, None))[1] for run in runs]
    if any(value is not None for value in macro_f1):
        rows.append(_metric_row("final macro F1", macro_f1, lambda v: format_number(v, ".4f"), max))
    dead = [{key: value for key, (_step, value) in store.latest_metrics(run["id"], "dead/").items()}
            for run in runs]
    for key in sorted(set().union(*dead)):
        # Fewer dead units is better: the lowest final fraction is the one highlighted.
        rows.append(_metric_row(f"final {key}", [layers.get(key) for layers in dead], format_percent, min))
    rows.append(("steps", [Text(str(run.get("step") or 0)) for run in runs]))
    rows.append(("duration", [Text(format_duration(run_duration(run))) for run in runs]))
    return rows, outcomes_from


def _metric_row(label: str, values: list, fmt, best) -> tuple[str, list[Text]]:
    """Metric cells; the best finite value (by `best`, min or max) is highlighted when comparing 2+ runs."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    best_value = best(finite) if best is not None and len(values) > 1 and finite else None
    return label, [Text(fmt(value), style=BEST_STYLE if best_value is not None and value == best_value else "")
                   for value in values]


def _add_metric_row(table: Table, label: str, values: list, fmt, best) -> None:
    table.add_row(*_metric_row(label, values, fmt, best)[:1], *_metric_row(label, values, fmt, best)[1])

