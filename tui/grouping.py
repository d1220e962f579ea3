"""How the plots tell runs apart: names made of what differs, one colour per value of a config key, seed groups.

- `varying_keys(flats)`: the config keys whose values differ between the shown runs (experiment name and
  description never count: two sweeps of the same grid are the same configs).
- A *seed group* is a set of runs whose configs are equal except for seeds (`train.seed`, `data.seed`): with
  aggregation on, the plots draw one mean line and a band for it (Aim's and W&B's grouping).
- The *colour key* (`g` cycles it) is a config key; every run with the same value of it gets the same colour in every
  tab and legend. `ColorMap` keeps value -> colour stable for the whole session (new values take the next free
  colour; a redraw never reshuffles), and optimizers always get the same colours (OPTIMIZER_COLORS).

Pure functions of run rows: no Textual, no store.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from experiments.report import MISSING, flat_config

IGNORED_PREFIXES = ("experiment.",)
PREFERRED_COLOR_KEYS = ("optimizer.name", "net.activation", "optimizer.lr", "net.name", "data.name",
                        "schedule.name")
BARE_KEYS = {"optimizer.name", "net.name", "data.name", "net.activation", "schedule.name"}  # shown as the value
SHORT_NAMES = {"optimizer.lr": "lr", "train.seed": "seed", "data.seed": "data seed", "train.epochs": "epochs",
               "train.batch_size": "batch", "optimizer.wd": "wd", "net.hidden": "hidden"}
NO_COLOR_KEY = "run"
# Palette slots (tui.plot.colors) per optimizer, so that the usual four (sgd, momentum, adam, rmsprop) get four
# different hues (blue, green, orange, pink) even on a 256-colour terminal, in every session.
OPTIMIZER_COLORS = {"adam": 0, "sgd": 1, "momentum": 2, "adagrad": 3, "rmsprop": 4, "adadelta": 7, "nesterov": 9}  # the colour key meaning "every run (or seed group) its own colour"


def is_seed_key(key: str) -> bool:
    return key == "seed" or key.endswith(".seed")


def is_ignored(key: str) -> bool:
    return key.startswith(IGNORED_PREFIXES)


def flat_of(run: dict) -> dict:
    """The run's resolved config flattened to dotted keys (`optimizer.lr`), like experiments.report.flat_config
    (lists and empty dicts stay values). Sections of plain values take the fast path: 10,000 configs in ~60 ms
    instead of ~0.4 s through the general recursion."""
    config = run.get("config")
    if not isinstance(config, dict):
        return {}
    flat = {}
    for section, body in config.items():
        if isinstance(body, dict) and body:
            for key, value in body.items():
                if isinstance(value, dict) and value:
                    flat.update(flat_config(value, f"{section}.{key}."))
                else:
                    flat[f"{section}.{key}"] = value
        else:
            flat[section] = body
    return flat


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varying_keys(flats: Sequence[dict], include_seeds: bool = True) -> list[str]:
    """Keys (in config order) whose values are not all equal across `flats`. A key only some runs have counts
    only if its values differ where it is set: `beta1` exists for adam alone, and says nothing the optimizer's name
    does not. (Plain comparisons, type included so that 1 and True differ: 10,000 runs take ~30 ms.)"""
    if len(flats) < 2:
        return []
    keys = dict.fromkeys(key for flat in flats for key in flat)
    varying = []
    for key in keys:
        if is_ignored(key) or (not include_seeds and is_seed_key(key)):
            continue
        first = kind = None
        for flat in flats:
            if key not in flat:
                continue
            value = flat[key]
            if kind is None:
                first, kind = value, type(value)
            elif value is not first and (type(value) is not kind or value != first):
                varying.append(key)
                break
    return varying


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def format_value(value) -> str:
    """Config values in labels: 1e-4 style for small floats, lists as 64x64."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or abs(value) >= 0.01:
            return f"{value:g}"
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return "—" if value is MISSING else str(value)


def describe(flat: dict, keys: Iterable[str]) -> str:
    """`adam lr=0.01 leaky_relu`: the values of `keys`, bare for names, `short=value` for the rest."""
    parts = []
    for key in keys:
        value = format_value(flat.get(key, MISSING))
        parts.append(value if key in BARE_KEYS else f"{short_name(key)}={value}")
    return " ".join(parts)


def seed_group_id(flat: dict) -> str:
    """Runs with the same id differ only by seeds (and experiment name)."""
    return _canonical({k: v for k, v in flat.items() if not is_ignored(k) and not is_seed_key(k)})


def color_key_choices(varying: Sequence[str]) -> list[str]:
    """What `g` cycles through for these runs: the preferred keys that vary, the other varying keys (not seeds),
    then NO_COLOR_KEY."""
    present = [k for k in PREFERRED_COLOR_KEYS if k in varying]
    present += [k for k in varying if k not in present and not is_seed_key(k)]
    return present + [NO_COLOR_KEY]


def effective_color_key(chosen: Optional[str], varying: Sequence[str]) -> str:
    """The user's choice if it still varies among the shown runs, else the first preferred key that does."""
    choices = color_key_choices(varying)
    return chosen if chosen in choices else choices[0]


class ColorMap:
    """Stable value -> palette index, per colour key, for the whole session."""

    def __init__(self, fixed: dict[str, dict[str, int]] | None = None):
        self._maps: dict[str, dict[str, int]] = {}
        self._fixed = dict(fixed or {})  # key -> value -> palette index, whatever else is shown

    def assign(self, key: str, values: Iterable) -> dict[str, int]:
        """Colour indices for these values of `key` (strings as `format_value` shows them); new ones take the next
        free index, the first batch in sorted (numeric) order."""
        mapping = self._maps.setdefault(key, {})
        fixed = self._fixed.get(key)
        new = sorted({format_value(v) for v in values} - set(mapping), key=_sort_key)
        for value in new:
            if fixed is not None and value in fixed and fixed[value] not in mapping.values():
                mapping[value] = fixed[value]
            else:
                used = set(mapping.values()) | (set(fixed.values()) if fixed else set())
                index = 0
                while index in used:
                    index += 1
                mapping[value] = index
        return mapping

    def index(self, key: str, value) -> int:
        return self.assign(key, [value])[format_value(value)]


def _sort_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


@dataclass
class Unit:
    """One line of a plot: a run, or a seed group (runs equal but for their seeds) drawn as mean + band."""
    id: str  # the first run's id (stable while the group exists)
    run_ids: list[str]
    label: str
    color: int
    group_value: str  # the colour key's value (what the colour means)
    seeds_differ: bool = False
    hidden: bool = False
    focused: bool = False

    @property
    def aggregated(self) -> bool:
        return len(self.run_ids) > 1


@dataclass
class PlotPlan:
    """What every plot view draws for the current selection: units in legend order, and what they mean."""
    units: list[Unit] = field(default_factory=list)
    color_key: str = NO_COLOR_KEY
    varying: list[str] = field(default_factory=list)
    title: str = ""  # which runs these are ("14 runs the filter shows", "3 selected")
    note: str = ""  # said on screen when the runs were capped
    optimizer_colors: dict[str, int] = field(default_factory=dict)  # optimizer name -> its colour, whatever `g` says


def plan_units(run_ids: Sequence[str], runs: dict, flats: dict, color_key: Optional[str], aggregate: bool,
               colors: ColorMap, hidden: set[str] = frozenset(), focus: Optional[str] = None) -> PlotPlan:
    """Units for the runs `run_ids` (in display order): seed groups when `aggregate`, named by what differs,
    coloured by the effective colour key."""
    run_ids = [rid for rid in run_ids if rid in runs]
    run_flats = [flats[rid] for rid in run_ids]
    varying = varying_keys(run_flats)
    key = effective_color_key(color_key, varying)
    groups: dict[str, list[str]] = {}
    for rid, flat in zip(run_ids, run_flats):
        group = seed_group_id(flat) if aggregate else rid
        groups.setdefault(group, []).append(rid)
    naming = [k for k in varying if not (aggregate and is_seed_key(k))]
    values = {}
    for members in groups.values():
        flat = flats[members[0]]
        values[members[0]] = flat.get(key, MISSING) if key != NO_COLOR_KEY else members[0]
    mapping = colors.assign(key, values.values())
    units = []
    for members in groups.values():
        flat = flats[members[0]]
        label = describe(flat, naming) or members[0]
        seeds_differ = len(members) > 1 and len({_canonical([flats[m].get(k) for k in flat if is_seed_key(k)])
                                                 for m in members}) > 1
        if len(members) > 1:
            label += f" ({len(members)} {'seeds' if seeds_differ else 'runs'})"
        value = values[members[0]]
        units.append(Unit(members[0], members, label, mapping[format_value(value)], format_value(value),
                          seeds_differ, hidden=members[0] in hidden, focused=members[0] == focus))
    return PlotPlan(units, key, varying)
