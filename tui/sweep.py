"""The next step after an LR range test: a sweep around each optimizer's suggested LR (s/3, s, 3s), as `--set`
overrides of the experiment file the tests were planned from, so the Launch view previews and starts it like any
launch (`mxdash run FILE --detach --set ...`). Pure functions: no Textual, no store.

One launch for every optimizer: the file's optimizer axes are fixed (`--set optimizer.name=...` drops a dotted axis)
and replaced by one section axis of optimizer tables, `grid.optimizer=[{name = "sgd", lr = 0.043}, ...]`: every table
is one run's [optimizer], so each optimizer gets its own three LRs (a plain `grid."optimizer.lr"` axis would give
every optimizer every LR). The file's other axes stay: they multiply as they did in the range tests.
"""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Iterable, Sequence

from experiments.config import BASE_DEFAULTS

SWEEP_FACTORS = (1 / 3, 1.0, 3.0)
OPTIMIZER = "optimizer"


def sweep_lrs(suggested: float) -> list[float]:
    """s/3, s and 3s at two significant digits (as `mxdash lrfind` prints its hint), ascending, no duplicates."""
    return sorted({float(f"{suggested * factor:.2g}") for factor in SWEEP_FACTORS})


def optimizer_table(optimizer: dict, lr: float) -> dict:
    """One run's [optimizer] for the sweep: the range test's optimizer (its name and every setting it had that is
    not the default, e.g. momentum or centered) at `lr`."""
    defaults = BASE_DEFAULTS[OPTIMIZER]
    table = {"name": optimizer["name"], "lr": lr}
    for key, value in optimizer.items():
        if key not in ("name", "lr") and value is not None and value != defaults.get(key):
            table[key] = value
    return table


def toml_value(value) -> str:
    """A TOML inline value (the `--set` parser reads values as TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a TOML number: {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for plain names
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise ValueError(f"cannot write {value!r} as TOML")


def sweep_tables(tests: Iterable[tuple[dict, float]]) -> list[dict]:
    """(range test's optimizer table, suggested LR) -> the section axis' tables, in test order, without repeats."""
    tables: list[dict] = []
    for optimizer, suggested in tests:
        for lr in sweep_lrs(suggested):
            table = optimizer_table(optimizer, lr)
            if table not in tables:
                tables.append(table)
    return tables


def sweep_overrides(grid: dict, tests: Sequence[tuple[dict, float]]) -> list[str]:
    """The `--set` items that turn the experiment file (whose grid is `grid`) into the sweep around `tests`."""
    if not tests:
        return []
    tables = sweep_tables(tests)
    # Dotted optimizer axes must go (a --set of the key drops its axis), and the section axis replaces them. The value
    # they are fixed at is the first sweep run's: every table sets name and lr anyway, and the range test's own
    # settings (its lr is the 1e-07 the test starts from) would read as part of the sweep.
    first = {**tests[0][0], **tables[0]}
    fixed = []
    for axis in grid:
        section, _, key = axis.partition(".")
        if section == OPTIMIZER and key:
            value = first.get(key, BASE_DEFAULTS[OPTIMIZER].get(key))
            if value is not None:
                plain = isinstance(value, str) and value.isidentifier()  # `optimizer.name=sgd` reads as the string
                fixed.append(f"{axis}={value if plain else toml_value(value)}")
    return fixed + [f"grid.{OPTIMIZER}={toml_value(tables)}"]


def overrides_text(overrides: Sequence[str]) -> str:
    """The Launch view's `--set` field for these items (it splits them back with shlex)."""
    return shlex.join(overrides)


def find_experiment_file(stored: str | None, name: str | None, candidates: Iterable[Path],
                         roots: Iterable[Path] = ()) -> Path | None:
    """The experiment file a range test was planned from: the path the experiment row stored (`mxdash lrfind FILE`
    as typed: relative to where it ran, tried against `roots`), else the shipped or launched file named like the
    experiment."""
    if stored:
        path = Path(stored)
        for candidate in ([path] if path.is_absolute() else [Path(root) / path for root in roots]):
            if candidate.is_file():
                return candidate
    candidates = list(candidates)
    if stored:
        for candidate in candidates:
            if candidate.name == Path(stored).name:
                return candidate
    for candidate in candidates:
        if name and candidate.stem == name:
            return candidate
    return None
