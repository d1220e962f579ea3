"""The Launch view's pure parts: which experiment files there are, the preview of a file's runs, the form's TOML.
Imports no Textual (only `experiments.config` parsing and Rich), so they are tested on their own."""
from __future__ import annotations

import shlex
from pathlib import Path

import tomli_w
from rich.console import Group
from rich.table import Table
from rich.text import Text

from experiments.config import BASE_DEFAULTS, ConfigError, experiment_name, plan_runs, read_experiment_file
from experiments.report import differing_config, flat_config, format_value
from tui.cli_runner import PROJECT_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

MAX_PREVIEW_RUNS = 12
DEFAULT_LRS = {"sgd": 0.05, "momentum": 0.05, "nesterov": 0.05, "adam": 0.003, "rmsprop": 0.003,
               "adagrad": 0.01, "adadelta": 1.0}


def experiment_files(runs_dir: Path, experiments_dir: Path | None = None) -> list[Path]:
    """Shipped experiment files, then the ones launched from the form before (newest last)."""
    shipped = sorted(Path(experiments_dir or PROJECT_ROOT / "experiments").glob("*.toml"))
    launched = sorted((Path(runs_dir) / "launched").glob("*.toml"), key=lambda p: p.stat().st_mtime) \
        if (Path(runs_dir) / "launched").is_dir() else []
    return shipped + launched


def known_values(files: list[Path], section: str) -> list[str]:
    """Names used for `section.name` in the given files (as a base value or on a grid axis), for suggestions."""
    found = {str(BASE_DEFAULTS[section]["name"])}
    for path in files:
        try:
            raw = read_experiment_file(path)
        except ConfigError:
            continue
        name = raw.get(section, {}).get("name")
        if isinstance(name, str):
            found.add(name)
        for axis, values in raw.get("grid", {}).items():
            if axis == f"{section}.name":
                found.update(v for v in values if isinstance(v, str))
            elif axis == section:
                found.update(v["name"] for v in values if isinstance(v, dict) and isinstance(v.get("name"), str))
    return sorted(found)


def parse_overrides(text: str, file=None) -> list[str]:
    """`optimizer.lr=0.1 train.epochs=3` (shell-like quoting allowed) -> ["optimizer.lr=0.1", "train.epochs=3"].
    Raises ConfigError naming the item as typed (`--set "train.epochs600"`) when it is not section.key=value: the
    parser's own message names it like a key of the file, and a bare number then reads as a line number."""
    try:
        items = shlex.split(text)
    except ValueError:
        items = text.split()
    for item in items:
        key = item.partition("=")[0].strip()
        if "=" not in item:
            raise ConfigError(file, f'--set "{item}"', "expects key=value, e.g. train.epochs=3")
        if "." not in key.strip("."):
            raise ConfigError(file, f'--set "{item}"', "keys are section.key, e.g. train.epochs=3")
    return items


def check_parallel(text: str, run_count: int) -> int | None:
    """The parallel field: empty is auto (None), else a whole number from 1 to the number of runs. Raises
    ValueError with the message the view shows."""
    text = text.strip()
    if not text:
        return None
    limit = max(1, run_count)
    if not text.isdigit() or not 1 <= int(text) <= limit:
        raise ValueError(f"parallel: {text} is not 1..{limit} (runs at a time; this launch has {run_count}; "
                         "empty: auto)")
    return int(text)


def render_preview(raw: dict, runs: list[dict], name: str, source: str) -> Group:
    """Name and description, run count, grid axes, base config and the first runs' differing keys."""
    parts = []
    title = Text()
    title.append(name, style="bold")
    title.append(f"  {len(runs)} run{'s' if len(runs) != 1 else ''}", style="bold cyan")
    title.append(f"  {source}", style="dim")
    parts.append(title)
    description = raw.get("experiment", {}).get("description")
    if description:
        parts.append(Text(str(description), style="italic"))
    grid = raw.get("grid", {})
    if grid:
        table = Table(title="grid axes", title_justify="left", box=None, padding=(0, 1), show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for axis, values in grid.items():
            shown = ", ".join(_short(v) for v in values)
            table.add_row(Text(axis), Text(f"{len(values)}: {shown}"))
        parts.append(table)
    base = Table(title="base config", title_justify="left", box=None, padding=(0, 1), show_header=False)
    base.add_column(style="dim")
    base.add_column()
    for section, body in raw.items():
        if section in ("grid", "experiment") or not isinstance(body, dict):
            continue
        for key, value in flat_config(body).items():
            if f"{section}.{key}" in grid or section in grid and key in _section_axis_keys(grid[section]):
                continue
            base.add_row(Text(f"{section}.{key}"), Text(format_value(value)))
    parts.append(base)
    if len(runs) > 1:
        differing = differing_config([{"config": run} for run in runs])
        if differing:
            table = Table(title="runs", title_justify="left", box=None, padding=(0, 1))
            table.add_column("#", style="dim", justify="right")
            for key, _values in differing:
                table.add_column(Text(key))
            for i in range(min(len(runs), MAX_PREVIEW_RUNS)):
                table.add_row(str(i + 1), *(Text(format_value(values[i])) for _key, values in differing))
            parts.append(table)
            if len(runs) > MAX_PREVIEW_RUNS:
                parts.append(Text(f"… and {len(runs) - MAX_PREVIEW_RUNS} more", style="dim"))
    return Group(*parts)


def _section_axis_keys(values) -> set[str]:
    keys: set[str] = set()
    for value in values if isinstance(values, list) else []:
        if isinstance(value, dict):
            keys.update(value)
    return keys


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return format_value(value)


FORM_HEADER = "# written by the mxdash dashboard (Launch form)\n"


def form_to_toml(raw: dict) -> str:
    """The experiment file for a form's raw dict (tomli-w: arrays of tables, quoted dotted keys, escapes)."""
    return FORM_HEADER + tomli_w.dumps(raw)


def plan_text(text: str, path: Path) -> tuple[dict, list[dict], str]:
    """Parse `text` as the file `path` will hold and plan its runs: (raw, runs, name). Raises ConfigError."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # a bug in the form: say so like a bad file
        raise ConfigError(path, "toml", f"invalid TOML: {e}") from None
    return raw, plan_runs(raw, path), experiment_name(raw, path)


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        try:
            return str(path.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            return str(path)
