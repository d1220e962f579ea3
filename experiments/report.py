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
def render_compare(store, runs: list[dict], weights: bool = False) -> Table:
    """One column per run: the config keys that differ, then outcome rows with the best value in each highlighted.
    `weights`: a row of parameter counts (`mxdash compare` has it; the dashboard's Compare view will, with its
    next layout)."""
    from experiments.lesson_views import total_params
    experiments = {run.get("experiment_id") for run in runs}
    shared = experiments.pop() if len(experiments) == 1 else None
    # runs of one experiment: `#3` headers (the experiment in the title) leave the room to the values
    headers = [f"#{run['id'][len(shared) + 1:]}" if shared and run["id"].startswith(f"{shared}.") else run["id"]
               for run in runs]
    table = Table(title=f"compare {shared or ''}", title_justify="left")
    differing = differing_config(runs)
    labels = [key for key, _ in differing] + ["final train loss", "best val acc"]
    table.add_column("", style="bold", no_wrap=True, min_width=min(28, max(len(label) for label in labels)))
    for header in headers:
        table.add_column(Text(header), justify="right", no_wrap=True)
    for key, values in differing:
        table.add_row(Text(key), *(Text(format_value(value)) for value in values))
    table.add_section()
    table.add_row("status", *(status_text(run.get("status")) for run in runs))
    if weights:
        _add_metric_row(table, "params", [total_params(run) for run in runs], lambda v: format_number(v, ","), None)
    if any(run.get("kind") == LRFIND_KIND for run in runs):  # a range test's lr is its suggestion
        table.add_row("suggested lr", *(Text(format_number(run.get("lr"), ".3g") if run.get("kind") == LRFIND_KIND
                                             else MISSING) for run in runs))
    _add_metric_row(table, "final train loss", [run.get("train_loss") for run in runs], format_number, min)
    _add_metric_row(table, "best val loss", [run.get("best_val_loss") for run in runs], format_number, min)
    _add_metric_row(table, "best val acc", [run.get("best_val_acc") for run in runs], format_percent, max)
    macro_f1 = [store.latest_metrics(run["id"], VAL_MACRO_F1).get(VAL_MACRO_F1, (None, None))[1] for run in runs]
    if any(value is not None for value in macro_f1):
        _add_metric_row(table, "final macro F1", macro_f1, lambda v: format_number(v, ".4f"), max)
    dead = [{key: value for key, (_step, value) in store.latest_metrics(run["id"], "dead/").items()}
            for run in runs]
    for key in sorted(set().union(*dead)):
        # Fewer dead units is better: the lowest final fraction is the one highlighted.
        _add_metric_row(table, f"final {key}", [layers.get(key) for layers in dead], format_percent, min)
    table.add_row("steps", *(str(run.get("step") or 0) for run in runs))
    table.add_row("duration", *(format_duration(run_duration(run)) for run in runs))
    return table


def _add_metric_row(table: Table, label: str, values: list, fmt, best) -> None:
    """A row of metric cells; the best finite value (by `best`, min or max) is highlighted when comparing 2+ runs."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    best_value = best(finite) if best is not None and len(values) > 1 and finite else None
    cells = [Text(fmt(value), style=BEST_STYLE if best_value is not None and value == best_value else "")
             for value in values]
    table.add_row(label, *cells)

