"""The Runs table's column model: fixed columns, one column per varying grid key of the shown runs, which columns
fit a width, and the cells of a run (status coloured, `stale` derived with experiments.metrics.display_status)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from rich.text import Text

from experiments.metrics import (COMPLETED, DIVERGED, FAILED, LOST, LRFIND_KIND, QUEUED, RUNNING, STALE, STOPPED,
                                 display_status)
from experiments.report import MISSING, keeps_digits
from tui.grouping import format_value, is_ignored, short_name, varying_keys
from tui.status import status_style

NARROW_WIDTH = 100  # below this terminal width some columns get narrower
# Columns kept when the terminal is too narrow for all, most important first (the table shows them in display
# order). "vary" stands for every column whose value differs between the shown runs (the fixed opt, lr and net
# columns when they vary, then the config columns): they are what tells two rows apart, so they go before the
# metrics. A fixed config column whose value is the same for every shown run is not shown at all: the status line
# says it once ("opt adam · lr 0.01 for all").
PRIORITY = ("sel", "run", "status", "vary", "loss", "acc", "epoch", "age", "params", "sps", "exp")
CONFIG_LIKE = ("opt", "lr", "net")  # fixed columns that show a config value (hidden when it does not vary)
COVERED_KEYS = {"optimizer.name", "optimizer.lr", "net.name"}  # fixed columns show them already
MIN_RUN_WIDTH = 8  # an id shortened below this says nothing
MAX_CONFIG_COLUMNS = 4
CONFIG_PREFIX = "cfg:"
BAR = " ▏▎▍▌▋▊▉█"
MARK = "●"
SELECT_STYLE = "bold yellow"
STATUS_ORDER = {s: i for i, s in enumerate((RUNNING, STALE, QUEUED, FAILED, DIVERGED, LOST, STOPPED, COMPLETED))}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    sort: Callable[[dict, float], object]  # (run, now) -> sort key (None sorts last)
    justify: str = "left"
    sortable: bool = True


def _natural_id(run: dict, now: float):
    return (run.get("experiment_id") or "", run.get("idx") or 0)


def id_order(run_id: str):
    """Run ids in grid order (`x-1.2` before `x-1.10`)."""
    head, _, tail = run_id.rpartition(".")
    return (head, int(tail)) if tail.isdigit() else (run_id, 0)


def _progress(run: dict) -> float | None:
    total, step = run.get("total_steps"), run.get("step")
    if total and step is not None:
        return min(1.0, step / total)
    epochs, epoch = run.get("epochs"), run.get("epoch")
    if epochs and epoch is not None:
        return min(1.0, epoch / epochs)
    return None


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def total_params(run: dict) -> int | None:
    """The net's weights count: the store's `total_params` column (json_extract of the summary), else the summary
    itself when it is decoded already (stores fed by tests)."""
    value = run.get("total_params")
    if value is None and isinstance(run.get("summary"), dict):
        value = run["summary"].get("total_params")
    return value if isinstance(value, int) else None


def format_params(count: int | None) -> str:
    """`8,970`, `99,999`, then `124k`, `4.95M`: exact while it fits the column."""
    if count is None:
        return MISSING
    if count < 100_000:
        return f"{count:,}"
    for unit, size in (("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


COLUMNS = (
    Column("sel", " ", 1, lambda r, now: 0, sortable=False),
    Column("exp", "experiment", 16, lambda r, now: (r.get("experiment_id") or "", r.get("idx") or 0)),
    Column("run", "run", 18, _natural_id),  # as wide as the longest shown id (fit_columns)
    Column("net", "net", 6, lambda r, now: r.get("net")),
    Column("opt", "opt", 8, lambda r, now: r.get("optimizer")),
    Column("lr", "lr", 7, lambda r, now: r.get("lr"), justify="right"),
    Column("cfg", "", 0, lambda r, now: 0, sortable=False),  # where the config columns go
    Column("status", "status", 9, lambda r, now: STATUS_ORDER.get(display_status(r, now), 99)),
    Column("epoch", "epoch", 11, lambda r, now: _progress(r)),
    Column("loss", "loss", 7, lambda r, now: _finite(r.get("train_loss")), justify="right"),
    Column("acc", "best acc", 8, lambda r, now: _finite(r.get("best_val_acc")), justify="right"),
    Column("sps", "samp/s", 7, lambda r, now: _finite(r.get("samples_per_s")), justify="right"),
    Column("params", "params", 6, lambda r, now: total_params(r), justify="right"),
    Column("age", "age", 7, lambda r, now: -(r.get("created") or 0.0), justify="right"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
SORTABLE = [c.key for c in COLUMNS if c.sortable]


def config_label(key: str) -> str:
    """The header of a config column: the short name (`activation`, `seed`), but the section for a `.name` key
    (`data.name` -> `data`): a bare `name` does not say what is named."""
    section, _, leaf = key.rpartition(".")
    if leaf == "name" and section:
        return section.rsplit(".", 1)[-1]
    return short_name(key)


def config_text(value) -> str:
    """A config cell: the value as labels show it; blank when the run's config has no such key (its resolved config
    holds every default, so a missing key is one that does not apply, e.g. `as_images` of a 2-D dataset); `[]` for an
    empty list (no hidden layers), which would otherwise read as blank too."""
    if value is MISSING:
        return ""
    if isinstance(value, list) and not value:
        return "[]"
    return format_value(value)


def config_column(key: str, values: Iterable) -> Column:
    """A column for the config key `key` (e.g. `net.activation`), as wide as its values (5..14)."""
    texts = [config_text(v) for v in values]
    width = min(14, max([5, len(config_label(key))] + [len(t) for t in texts]))
    return Column(CONFIG_PREFIX + key, config_label(key), width, lambda run, now: None)  # the view sorts by flat


def config_keys(flats: Sequence[dict], experiments: Sequence[str] | None = None) -> list[str]:
    """The keys that vary between these runs and no fixed column shows (seeds included: they tell repeated runs
    apart), at most MAX_CONFIG_COLUMNS: the grid keys first (those that vary inside one experiment), then the
    keys in which experiments differ."""
    keys = [k for k in varying_keys(flats) if k not in COVERED_KEYS and not is_ignored(k)]
    if experiments is not None and len(keys) > 1:
        first: dict[tuple[str, str], object] = {}
        grid = set()
        for flat, experiment in zip(flats, experiments):
            for key in keys:
                if key in grid:
                    continue
                value = flat.get(key)
                seen = first.setdefault((experiment, key), value)
                if seen is not value and (type(seen) is not type(value) or seen != value):
                    grid.add(key)
        keys = [k for k in keys if k in grid] + [k for k in keys if k not in grid]
    return keys[:MAX_CONFIG_COLUMNS]


def config_keys_of(model, run_ids: Sequence[str]) -> list[str]:
    """The config column keys (`cfg:net.activation`) for these runs of the model."""
    return [CONFIG_PREFIX + k for k in config_keys([model.flat(rid) for rid in run_ids], _experiments(model, run_ids))]


def config_columns_of(model, run_ids: Sequence[str]) -> list[Column]:
    flats = [model.flat(rid) for rid in run_ids]
    return [config_column(k, [f.get(k, MISSING) for f in flats])
            for k in config_keys(flats, _experiments(model, run_ids))]


def run_id_width(run_ids: Iterable[str]) -> int:
    """The run column's width: the longest shown id (ids are what users type into `mxdash show`)."""
    return max([len("run")] + [len(rid) for rid in run_ids])


def fixed_value(run: dict, key: str) -> str:
    """What the fixed config-like column `key` (opt, lr, net) shows for a run."""
    if key == "lr":
        return compact_number(run.get("lr"), COLUMN_BY_KEY["lr"].width)
    return (run.get("optimizer") if key == "opt" else run.get("net")) or MISSING


def constant_columns(runs: Sequence[dict]) -> dict[str, str]:
    """The fixed config-like columns (opt, lr, net) whose value is the same for all of 2+ runs, with that value:
    they tell no rows apart, so the table leaves them out and the status line says them once."""
    if len(runs) < 2:
        return {}
    constant = {}
    for key in CONFIG_LIKE:
        values = {fixed_value(run, key) for run in runs}
        if len(values) == 1:
            constant[key] = values.pop()
    return constant


def constant_text(constant: dict[str, str]) -> str:
    """`opt adam · lr 0.01 for all` (empty when nothing is constant)."""
    if not constant:
        return ""
    return " · ".join(f"{COLUMN_BY_KEY[key].label} {value}" for key, value in constant.items()) + " for all"


def _experiments(model, run_ids: Sequence[str]) -> list[str]:
    return [model.runs.get(rid, {}).get("experiment_id") or "" for rid in run_ids]


def layout_changed(model, shown: Iterable[str], new: Sequence[str], columns: Sequence[Column],
                   run_width: int | None, constant: dict[str, str]) -> bool:
    """Whether these new matching runs change the columns fitted to the `shown` ones: a longer id than the run
    column holds, another value of a column left out as constant, a second run, or other grid keys that vary
    (judged on a sample of 200 shown runs: thousands would cost a frame)."""
    if not new:
        return False
    sample = [rid for rid in list(shown)[:200] if rid in model.runs]
    if run_id_width(new) > (run_width or 0) or len(sample) < 2:
        return True
    if any(fixed_value(model.runs[rid], key) != value for rid in new for key, value in constant.items()):
        return True
    return config_keys_of(model, sample + list(new)) != [c.key for c in columns]


def fit_columns(width: int, config: Sequence[Column] = (), run_width: int | None = None,
                constant: Iterable[str] = ()) -> tuple[list[str], dict[str, int]]:
    """The columns that fit `width` terminal cells (by PRIORITY), in display order, and their widths. `run_width` is
    the longest shown id: the run column gets all of it unless even sel + run + status do not fit, and only then
    is it narrowed (its cells are shortened in the middle: `shorten_id`). `constant` columns are left out."""
    widths = {c.key: c.width for c in COLUMNS if c.key != "cfg"}
    widths.update({c.key: c.width for c in config})
    if width < NARROW_WIDTH:
        widths.update(epoch=9, age=4, acc=6)
    available = width - 2  # the vertical scrollbar
    cost = lambda key: widths[key] + 2  # noqa: E731  (cell padding 1 on each side)
    widths["run"] = max(MIN_RUN_WIDTH, min(run_width or widths["run"],
                                           available - cost("sel") - cost("status") - 2))
    varying = [key for key in CONFIG_LIKE[:2] if key not in constant] + [c.key for c in config] \
        + [key for key in CONFIG_LIKE[2:] if key not in constant]
    chosen = set()
    for key in PRIORITY:
        for candidate in (varying if key == "vary" else [key]):
            if cost(candidate) <= available:
                chosen.add(candidate)
                available -= cost(candidate)
    order = []
    for column in COLUMNS:
        if column.key == "cfg":
            order.extend(c.key for c in config if c.key in chosen)
        elif column.key in chosen:
            order.append(column.key)
    return order, widths


# -- cells ----------------------------------------------------------------------------------------------------------
def _num(value, fmt: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, fmt)


def _short_exponent(text: str) -> str:
    """`6.12e+09` -> `6.12e9`, `1.5e-05` -> `1.5e-5`: two to three cells less in a narrow column."""
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


def compact_number(value, width: int, fixed: str | None = None) -> str:
    """A number that fits `width` cells: `fixed` format (e.g. `.4f`) when it fits and keeps two significant digits,
    else 3, 2, 1 significant digits with a short exponent (`6.12e9`, `6.1e9`, `6e9`, `1.73e-5`)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _num(value, "g")
    if fixed is not None and len(format(value, fixed)) <= width and keeps_digits(value, format(value, fixed)):
        return format(value, fixed)
    text = ""
    for digits in (3, 2, 1):
        text = _short_exponent(format(value, f".{digits}g"))
        if len(text) <= width:
            break
    return text


def shorten_id(run_id: str, width: int) -> str:
    """A run id cut to `width` cells in the middle, keeping the tail that tells runs apart (`lr_sw…lrfind-2.4`): the
    experiment's number and the run number are at the end."""
    if len(run_id) <= width:
        return run_id
    head, _, tail = run_id.rpartition("-")
    keep = min(width - 1, max(len(tail) + 1 if head else 0, width // 2))  # "-2.4" at least, half if more fits
    return run_id[:width - 1 - keep] + "…" + run_id[-keep:]


def format_age(seconds: float | None) -> str:
    """Short ages for a table cell: 42s, 7m, 3h, 5d."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age_cell(run: dict, now: float) -> Text:
    created = run.get("created")
    return Text(format_age(now - created if created else None), style="dim", justify="right")


def progress_cell(run: dict, width: int, status: str | None = None) -> Text:
    """`3/10 ▇▇▇▍  ` : whole epochs done of the total, and a bar of the exact progress (steps when known)."""
    epochs = run.get("epochs")
    epoch = run.get("epoch") or 0
    label = f"{min(int(epoch), epochs)}/{epochs}" if epochs else f"{int(epoch)}"
    bar_width = width - len(label) - 1
    frac = _progress(run)
    text = Text(label)
    if bar_width >= 3 and frac is not None:
        eighths = int(round(frac * bar_width * 8))
        full, part = divmod(eighths, 8)
        bar = "█" * full + (BAR[part] if part and full < bar_width else "")
        status = status or run.get("status")
        style = "green" if status == COMPLETED else status_style(status) or "cyan"
        text.append(" ")
        text.append(bar.ljust(bar_width), style=style)
    return text


def run_cells(run: dict, now: float, keys: Iterable[str], selected: bool, widths: dict[str, int],
              flat: dict | None = None) -> list:
    """The table cells of one run, in `keys` order. The run column is the id, shortened in the middle only
    when the column is narrower (`shorten_id`)."""
    status = display_status(run, now) or MISSING
    cells = []
    for key in keys:
        if key == "sel":
            cells.append(Text(MARK, style=SELECT_STYLE) if selected else " ")
        elif key.startswith(CONFIG_PREFIX):
            value = (flat or {}).get(key[len(CONFIG_PREFIX):], MISSING)
            cells.append(Text(config_text(value), justify="right" if isinstance(value, (int, float)) else "left"))
        elif key == "exp":
            cells.append(run.get("experiment_id") or MISSING)
        elif key == "run":
            cells.append(shorten_id(run["id"], widths["run"]))
        elif key == "net":
            cells.append(run.get("net") or MISSING)
        elif key == "opt":
            cells.append(run.get("optimizer") or MISSING)
        elif key == "lr":
            cells.append(Text(compact_number(run.get("lr"), widths["lr"]), justify="right"))
        elif key == "status":
            cells.append(Text(status, style=status_style(status)))
        elif key == "epoch" and run.get("kind") == LRFIND_KIND:  # an LR range test counts steps, not epochs
            cells.append(Text(f"{run.get('step') or 0} st"))
        elif key == "epoch":
            cells.append(progress_cell(run, widths["epoch"], status))
        elif key == "loss" and run.get("kind") == LRFIND_KIND:  # its last loss is the blow-up that ended it
            cells.append(Text(MISSING, justify="right"))
        elif key == "loss":
            loss = run.get("train_loss")
            style = "dark_orange" if isinstance(loss, float) and not math.isfinite(loss) else ""
            cells.append(Text(compact_number(loss, widths["loss"], ".4f"), style=style, justify="right"))
        elif key == "acc":
            acc = run.get("best_val_acc")
            cells.append(Text(_num(None if acc is None else 100 * acc, ".1f") + ("%" if acc is not None else ""),
                              justify="right"))
        elif key == "sps":
            cells.append(Text(_num(run.get("samples_per_s"), ",.0f"), justify="right"))
        elif key == "params":
            cells.append(Text(format_params(total_params(run)), justify="right"))
        elif key == "age":
            cells.append(age_cell(run, now))
    return cells


def sort_func(sort_key: str, reverse: bool, model, now: float):
    """The sort key function of runs for a column (config columns sort by the run's value, numbers first); runs
    without a value sort last either way, ties in grid order."""
    if sort_key.startswith(CONFIG_PREFIX):
        config_key = sort_key[len(CONFIG_PREFIX):]

        def value_of(run):
            value = model.flat(run["id"]).get(config_key)
            if value is None:
                return None
            return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))
    else:
        column = COLUMN_BY_KEY[sort_key]

        def value_of(run):
            return column.sort(run, now)

    def key(run: dict):
        value = value_of(run)
        tie = (run.get("experiment_id") or "", run.get("idx") or 0)
        if value is None:
            return (1 if not reverse else 0, 0, tie)
        return (0 if not reverse else 1, value, tie)

    return key
