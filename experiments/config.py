"""Experiment files: one TOML file = one experiment; its [grid] expands into runs.

Parsing, `--set` overrides and grid expansion (`read_experiment_file`, `apply_overrides`, `plan_runs`) are pure Python
so the dashboard can preview a grid without importing mxnet. `resolve_runs` validates every run fully: it asks the net
and dataset registries (which import mxnet) for their accepted keys.
"""
from __future__ import annotations

import copy
import itertools
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Every key a section accepts, with its default. `None` defaults are optional values of the type in TYPES.
BASE_DEFAULTS = {
    "experiment": {"name": "", "description": ""},
    "data": {"name": "digits", "val_fraction": 0.2, "seed": 0},
    "net": {"name": "mlp"},
    "optimizer": {"name": "adam", "lr": 0.001, "wd": 0.0, "clip_gradient": None, "momentum": 0.9,
                  "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "rho": 0.9, "centered": False},
    "train": {"epochs": 5, "batch_size": 64, "seed": 0, "device": "cpu", "log_every": 10, "probe_every": 100,
              "probe_batch": 256, "checkpoint_every": 1, "threads": 0, "diverge_factor": 0.0},
    "schedule": {"name": "constant", "warmup_steps": 0, "factor": 0.1, "step_epochs": [], "final_lr": 0.0},
}
OPTIONAL_TYPES = {("optimizer", "clip_gradient"): float}
SECTIONS = tuple(BASE_DEFAULTS) + ("grid",)

# Which optimizer keys each optimizer uses; the resolved config of a run keeps only those, so `compare` shows
# only differences that mattered.
OPTIMIZER_KEYS = {
    "sgd": (),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("beta1", "beta2", "epsilon"),
    "rmsprop": ("rho", "epsilon", "centered"),
    "adagrad": ("epsilon",),
    "adadelta": ("rho", "epsilon"),  # MXNet's AdaDelta ignores the learning rate (lr is kept for the record)
}
COMMON_OPTIMIZER_KEYS = ("name", "lr", "wd", "clip_gradient")
SCHEDULE_KEYS = {
    "constant": ("warmup_steps",),
    "warmup": ("warmup_steps",),
    "step": ("warmup_steps", "factor", "step_epochs"),
    "cosine": ("warmup_steps", "final_lr"),
}
DEVICE_PATTERN = re.compile(r"^(auto|cpu|gpu|(cpu|gpu):\d+(,\d+)*)$")


class ConfigError(Exception):
    """Bad experiment input. `str(e)` is the whole user-facing message: file, key, what was expected."""

    def __init__(self, file, key: str | None, message: str):
        self.file, self.key = str(file) if file else "<config>", key
        super().__init__(f"{self.file}: {key + ': ' if key else ''}{message}")


# -- parsing --------------------------------------------------------------------------------------------------------
def read_experiment_file(path) -> dict:
    """Parse an experiment TOML file. Raises ConfigError for a missing file or a syntax error."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, None, "no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, expected a .toml experiment file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"invalid TOML: {e}") from None


def parse_override(text: str, file=None) -> tuple[str, object]:
    """`key=value` from `--set`: the value is read as a TOML value (numbers, bools, lists, quoted strings), and as a
    bare string when it is not one (`--set net.activation=relu`)."""
    if "=" not in text:
        raise ConfigError(file, text, "--set expects key=value, e.g. --set optimizer.lr=0.01")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(raw: dict, overrides: list[str], file=None) -> dict:
    """Apply `--set section.key=value` overrides. Setting a key that is also a grid axis fixes it (the axis goes)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text, file)
        if key.startswith("grid."):
            axis = key[len("grid."):].strip('"')
            raw.setdefault("grid", {})[axis] = value
            continue
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(file, key, "--set keys are section.key, e.g. optimizer.lr")
        if section not in BASE_DEFAULTS:
            raise ConfigError(file, key, f"unknown section '{section}' (expected one of {', '.join(SECTIONS)})")
        raw.setdefault(section, {})[name] = value
        raw.get("grid", {}).pop(key, None)
    return raw


def check_structure(raw: dict, file=None) -> None:
    """Sections and grid axes are known and well-formed (what can be checked without the registries)."""
    for section, body in raw.items():
        if section not in SECTIONS:
            raise ConfigError(file, section, f"unknown section (expected one of {', '.join(SECTIONS)})")
        if not isinstance(body, dict):
            raise ConfigError(file, section, "expected a [section] table")
    for axis, values in raw.get("grid", {}).items():
        section, _, name = axis.partition(".")
        if section not in BASE_DEFAULTS:
            raise ConfigError(file, f"grid.{axis}", "grid keys are dotted paths like \"optimizer.lr\", or a section "
                                                    "name whose values are tables")
        if not isinstance(values, list):
            raise ConfigError(file, f"grid.{axis}", f"expected a list of values, got {values!r}")
        if not values:
            raise ConfigError(file, f"grid.{axis}", "empty grid axis: give at least one value")
        if not name and not all(isinstance(v, dict) for v in values):
            raise ConfigError(file, f"grid.{axis}", "a section axis takes tables, e.g. "
                                                    "[{name = \"sgd\", lr = 0.1}, {name = \"adam\", lr = 0.001}]")


def plan_runs(raw: dict, file=None) -> list[dict]:
    """The grid product: one raw config per run (sections as dicts, grid values applied), in file order.
    An axis is a dotted key with a list of values, or a section name with a list of tables (keys varied together)."""
    check_structure(raw, file)
    base = {section: dict(raw.get(section, {})) for section in BASE_DEFAULTS}
    grid = raw.get("grid", {})
    runs = []
    for combo in itertools.product(*grid.values()):
        run = copy.deepcopy(base)
        for axis, value in zip(grid, combo):
            section, _, name = axis.partition(".")
            if name:
                run[section][name] = value
            else:  # a section axis: each value is a table of keys set together (an optimizer with its own lr)
                run[section].update(value)
        runs.append(run)
    return runs


def experiment_name(raw: dict, file=None) -> str:
    name = raw.get("experiment", {}).get("name") or (Path(file).stem if file else "experiment")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(name)).strip("-") or "experiment"


# -- validation -----------------------------------------------------------------------------------------------------
def _check_type(file, key: str, value, default, optional_type=None):
    """Value matches the default's type (ints accepted for floats). Returns the value, floats coerced."""
    expected = optional_type or (type(default) if default is not None else None)
    if value is None and default is None:
        return None
    if expected is None:
        if isinstance(value, (str, int, float, bool, list)):
            return value
        raise ConfigError(file, key, f"expected a number, string, bool or list, got {value!r}")
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is list:
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(file, key, f"expected {_type_name(expected)}, got {value!r}")
    return value


def _type_name(t) -> str:
    return {bool: "true or false", float: "a number", int: "an integer", list: "a list", str: "a string"}.get(t, str(t))


def _fill_section(file, section: str, given: dict, defaults: dict) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(file, f"{section}.{unknown[0]}",
                          f"unknown key (accepted: {', '.join(sorted(defaults))})")
    out = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        out[key] = _check_type(file, f"{section}.{key}", value, default, OPTIONAL_TYPES.get((section, key)))
    return out


def _check_choice(file, key: str, value, available, what: str) -> None:
    if value not in available:
        raise ConfigError(file, key, f"unknown {what} '{value}' (available: {', '.join(sorted(available))})")


def _positive(file, key: str, value, integer=False):
    if value is None or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(file, key, f"expected {kind}, got {value!r}")


def resolve_run(raw_run: dict, file=None, name: str = "experiment") -> dict:
    """Validate one planned run and return its full resolved config (every default filled in)."""
    import nets
    from experiments import data as datasets

    run = {"experiment": _fill_section(file, "experiment", raw_run["experiment"], BASE_DEFAULTS["experiment"])}
    run["experiment"]["name"] = name

    data_name = raw_run["data"].get("name", BASE_DEFAULTS["data"]["name"])
    _check_choice(file, "data.name", data_name, datasets.DATASETS, "dataset")
    data_defaults = {**BASE_DEFAULTS["data"], **datasets.DATASETS[data_name].defaults, "name": data_name}
    run["data"] = _fill_section(file, "data", raw_run["data"], data_defaults)
    if not 0 < run["data"]["val_fraction"] < 1:
        raise ConfigError(file, "data.val_fraction", f"expected a number between 0 and 1, got "
                                                     f"{run['data']['val_fraction']!r}")

    net_name = raw_run["net"].get("name", BASE_DEFAULTS["net"]["name"])
    _check_choice(file, "net.name", net_name, nets.available(), "net")
    run["net"] = _fill_section(file, "net", raw_run["net"], {**nets.get_spec(net_name).defaults, "name": net_name})

    run["optimizer"] = _resolve_optimizer(file, raw_run["optimizer"])
    run["train"] = _resolve_train(file, raw_run["train"])
    run["schedule"] = _resolve_schedule(file, raw_run["schedule"])
    return run


def _resolve_optimizer(file, given: dict) -> dict:
    full = _fill_section(file, "optimizer", given, BASE_DEFAULTS["optimizer"])
    name = full["name"]
    _check_choice(file, "optimizer.name", name, OPTIMIZER_KEYS, "optimizer")
    _positive(file, "optimizer.lr", full["lr"])
    if full["wd"] < 0:
        raise ConfigError(file, "optimizer.wd", f"expected a number >= 0, got {full['wd']!r}")
    if full["clip_gradient"] is not None:
        _positive(file, "optimizer.clip_gradient", full["clip_gradient"])
    keep = COMMON_OPTIMIZER_KEYS + OPTIMIZER_KEYS[name]
    return {key: full[key] for key in keep}


def _resolve_train(file, given: dict) -> dict:
    train = _fill_section(file, "train", given, BASE_DEFAULTS["train"])
    for key in ("epochs", "batch_size", "log_every", "probe_every", "probe_batch", "checkpoint_every"):
        _positive(file, f"train.{key}", train[key], integer=True)
    if train["threads"] < 0:
        raise ConfigError(file, "train.threads", f"expected an integer >= 0 (0 = automatic), got {train['threads']!r}")
    if train["diverge_factor"] < 0 or 0 < train["diverge_factor"] <= 1:
        raise ConfigError(file, "train.diverge_factor", "expected 0 (off: only NaN/inf loss counts as diverged) or "
                                                        f"a factor > 1, got {train['diverge_factor']!r}")
    if not DEVICE_PATTERN.match(train["device"]):
        raise ConfigError(file, "train.device",
                          f"unknown device '{train['device']}' (expected auto, cpu, cpu:0,1, gpu, gpu:0 or gpu:0,1)")
    return train


def _resolve_schedule(file, given: dict) -> dict:
    full = _fill_section(file, "schedule", given, BASE_DEFAULTS["schedule"])
    name = full["name"]
    _check_choice(file, "schedule.name", name, SCHEDULE_KEYS, "schedule")
    if full["warmup_steps"] < 0:
        raise ConfigError(file, "schedule.warmup_steps", f"expected an integer >= 0, got {full['warmup_steps']!r}")
    if name == "step":
        if not full["step_epochs"] or not all(isinstance(e, int) and e > 0 for e in full["step_epochs"]):
            raise ConfigError(file, "schedule.step_epochs", "expected a non-empty list of positive epoch numbers")
        if not 0 < full["factor"] <= 1:
            raise ConfigError(file, "schedule.factor", f"expected a number in (0, 1], got {full['factor']!r}")
    return {"name": name, **{key: full[key] for key in SCHEDULE_KEYS[name]}}


def load_experiment(path, overrides: list[str] = ()) -> tuple[str, dict, list[dict]]:
    """Read, override, expand and validate an experiment file: (name, raw config after overrides, resolved runs).
    Raises ConfigError on the first problem; nothing is created."""
    raw = apply_overrides(read_experiment_file(path), list(overrides), path)
    name = experiment_name(raw, path)
    runs = [resolve_run(run, path, name) for run in plan_runs(raw, path)]
    from experiments.devices import check_device

    for run in runs:
        try:
            check_device(run["train"]["device"])
        except ValueError as e:
            raise ConfigError(path, "train.device", str(e)) from None
    return name, raw, runs
