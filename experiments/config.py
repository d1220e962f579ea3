"""Experiment files: one TOML file = one experiment; its [grid] expands into runs.

Parsing, `--set` overrides and grid expansion (`read_experiment_file`, `apply_overrides`, `plan_runs`) are pure Python
so the dashboard can preview a grid without the net and dataset registries. `resolve_run` fills in every default and
validates the run completely before anything exists: every key's type and range (RULES), the dataset's own checks
(local files and their headers included) and the net's own checks against the data's kind and shape, all declared
with the dataset and the net (`experiments.data.describe_dataset`, `nets.check_params`); none of it imports mxnet.

The validation contract: bad input is refused with ONE line `FILE: KEY: what was expected, got VALUE` and exit
code 2 before any run, database or folder is created.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
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
MAX_RUNS = 10_000     # a grid beyond this is refused before it is expanded (10^6 runs took 325 s and 5 GB to plan)
MAX_INT = 2**31 - 1   # MXNet sizes and counts are int32; the store's INTEGER columns then never overflow either
MAX_SEED = 2**32 - 1  # numpy RandomState seeds


class ConfigError(Exception):
    """Bad experiment input. `str(e)` is the whole user-facing message: file, key, what was expected."""

    def __init__(self, file, key: str | None, message: str):
        self.file, self.key = str(file) if file else "<config>", key
        super().__init__(f"{self.file}: {key + ': ' if key else ''}{message}")


# -- parsing --------------------------------------------------------------------------------------------------------
def read_experiment_file(path) -> dict:
    """Parse an experiment TOML file. Raises ConfigError for a file that is missing, unreadable, not UTF-8 text or
    not valid TOML."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(path, None, "no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, expected a .toml experiment file") from None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read the experiment file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        what = "a binary file" if b"\0" in data[:4096] else "not UTF-8 text"
        raise ConfigError(path, None, f"{what} (byte 0x{data[e.start]:02x} at offset {e.start}); an experiment "
                                      "file is TOML, which must be UTF-8: save it as UTF-8") from None
    try:
        return tomllib.loads(text)
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
    """Apply `--set section.key=value` overrides. Setting a key that is also a grid axis fixes it (the axis goes).
    On a section axis (`"optimizer" = [{...}, ...]`, whose tables would otherwise override [optimizer]) the value is
    set in every table of the axis."""
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
        grid = raw.get("grid", {})
        if isinstance(grid, dict):
            grid.pop(key, None)
            for table in section_axis(raw, section):
                table[name] = value
    return raw


def section_axis(raw: dict, section: str) -> list:
    """The tables of the grid's section axis for `section` (`"optimizer" = [{...}, ...]`), or []."""
    grid = raw.get("grid")
    values = grid.get(section) if isinstance(grid, dict) else None
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def check_structure(raw: dict, file=None) -> None:
    """Sections and grid axes are known and well-formed, and the grid is not too large (what can be checked without
    the registries)."""
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
    sizes = [len(values) for values in raw.get("grid", {}).values()]
    if math.prod(sizes) > MAX_RUNS:  # counted before anything is expanded
        raise ConfigError(file, "grid", f"{math.prod(sizes):,} runs ({' x '.join(map(str, sizes))}), more than the "
                                        f"{MAX_RUNS:,} one experiment may have; split it into several experiments")


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
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(low: int, high: int):
    return lambda v: low <= v <= high


def _increasing_epochs(values) -> bool:
    return all(_is_int(v) and 1 <= v <= MAX_INT for v in values) and all(a < b for a, b in zip(values, values[1:]))


# Where the runs will train: this machine by default; `mxdash run --cluster ray` sets the largest node's cores.
THREAD_LIMIT: list = [None, "this machine's cores"]


def set_thread_limit(cores: int | None, where: str = "this machine's cores") -> None:
    THREAD_LIMIT[:] = [cores, where]


def _threads_rule():
    def cores():
        return THREAD_LIMIT[0] or os.cpu_count() or 1

    class Expected(str):  # the message names the limit in force when it is shown
        def __str__(self):
            return f"0 (automatic) or a thread count from 1 to {cores()} ({THREAD_LIMIT[1]})"

        def __format__(self, spec):
            return format(str(self), spec)

    return (lambda v: 0 <= v <= cores()), Expected("")


# The range of every base key: key -> (accepts(value), what is expected). Types were checked against the defaults
# first, and every float is finite. Net and dataset keys are checked by the net and the dataset themselves.
POSITIVE, UNIT = (lambda v: v > 0, "a positive number"), (lambda v: 0 <= v < 1, "a number in [0, 1)")
COUNT = (_int_in(1, MAX_INT), f"a positive integer (at most {MAX_INT})")
RULES = {
    "optimizer.lr": POSITIVE,
    "optimizer.wd": (lambda v: v >= 0, "a number >= 0"),
    "optimizer.clip_gradient": POSITIVE,
    "optimizer.momentum": UNIT, "optimizer.beta1": UNIT, "optimizer.beta2": UNIT, "optimizer.rho": UNIT,
    "optimizer.epsilon": POSITIVE,
    **{f"train.{key}": COUNT for key in ("epochs", "batch_size", "log_every", "probe_every", "probe_batch",
                                         "checkpoint_every")},
    "train.seed": (_int_in(0, MAX_SEED), f"an integer from 0 to {MAX_SEED}"),
    "train.threads": _threads_rule(),
    "train.diverge_factor": (lambda v: v == 0 or v > 1,
                             "0 (off: only NaN/inf loss counts as diverged) or a factor > 1"),
    "train.device": (DEVICE_PATTERN.match, "auto, cpu, cpu:0,1, gpu, gpu:0 or gpu:0,1"),
    "schedule.warmup_steps": (_int_in(0, MAX_INT), f"an integer from 0 to {MAX_INT}"),
    "schedule.factor": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "schedule.final_lr": (lambda v: v >= 0, "a number >= 0"),
    "schedule.step_epochs": (_increasing_epochs, "a list of increasing positive epoch numbers"),
}


def check_ranges(file, section: str, values: dict) -> None:
    for key, value in values.items():
        rule = RULES.get(f"{section}.{key}")
        if rule and value is not None and not rule[0](value):
            raise ConfigError(file, f"{section}.{key}", f"expected {rule[1]}, got {value!r}")


def _check_type(file, key: str, value, default, optional_type=None):
    """Value matches the default's type (ints accepted for floats; floats finite). Returns the value, floats
    coerced."""
    expected = optional_type or (type(default) if default is not None else None)
    if value is None and default is None:
        return None
    if expected is None:
        if isinstance(value, (str, int, float, bool, list)):
            return value
        raise ConfigError(file, key, f"expected a number, string, bool or list, got {value!r}")
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(file, key, f"expected a finite number, got {value!r}")
        return number
    ok = _is_int(value) if expected is int else isinstance(value, expected) and expected is not float
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
    return {key: _check_type(file, f"{section}.{key}", given.get(key, default), default,
                             OPTIONAL_TYPES.get((section, key)))
            for key, default in defaults.items()}


def _check_choice(file, key: str, value, available, what: str) -> None:
    if value not in available:
        raise ConfigError(file, key, f"unknown {what} '{value}' (available: {', '.join(sorted(available))})")


def resolve_run(raw_run: dict, file=None, name: str = "experiment", describe=None) -> dict:
    """One planned run -> its resolved config: every default filled in (types checked against the defaults),
    validated (`validate_config`), and only the optimizer and schedule keys the run uses kept, so `compare` shows
    only differences that matter. Raises ConfigError naming the key."""
    config = fill_defaults(raw_run, file, name)
    validate_config(config, file, describe)
    optimizer, schedule = config["optimizer"], config["schedule"]
    config["optimizer"] = {key: optimizer[key] for key in COMMON_OPTIMIZER_KEYS + OPTIMIZER_KEYS[optimizer["name"]]}
    config["schedule"] = {"name": schedule["name"], **{key: schedule[key] for key in SCHEDULE_KEYS[schedule["name"]]}}
    return config


def fill_defaults(raw_run: dict, file=None, name: str = "experiment") -> dict:
    """Every section with every key: the dataset's and the net's own keys come from their registries."""
    import nets
    from experiments import data as datasets

    config = {"experiment": _fill_section(file, "experiment", raw_run.get("experiment", {}),
                                          BASE_DEFAULTS["experiment"])}
    config["experiment"]["name"] = name
    data_name = raw_run.get("data", {}).get("name", BASE_DEFAULTS["data"]["name"])
    _check_choice(file, "data.name", data_name, datasets.DATASETS, "dataset")
    data_defaults = {**BASE_DEFAULTS["data"], **datasets.DATASETS[data_name].defaults, "name": data_name}
    config["data"] = _fill_section(file, "data", raw_run.get("data", {}), data_defaults)
    net_name = raw_run.get("net", {}).get("name", BASE_DEFAULTS["net"]["name"])
    try:
        spec = nets.get_spec(net_name)
    except KeyError as e:  # unknown, or its module failed to import (the message names the file and line)
        raise ConfigError(file, "net.name", e.args[0]) from None
    config["net"] = _fill_section(file, "net", raw_run.get("net", {}), {**spec.defaults, "name": net_name})
    for section in ("optimizer", "train", "schedule"):
        config[section] = _fill_section(file, section, raw_run.get(section, {}), BASE_DEFAULTS[section])
    return config


def validate_config(config: dict, file=None, describe=None):
    """Every check of a run's config, before any run exists: the range of every base key (RULES), the dataset's own
    checks (`describe_dataset`: its parameters, its local files and their headers), the net's own checks against the
    data's kind and shape (`nets.check_params`), the batch against the training set, the device. Works on a filled
    config and on a resolved one (a stored run's). Returns the dataset's DataShape; raises ConfigError naming the key.
    `describe` is `experiments.data.describe_dataset` (or a cached version of it)."""
    import nets
    from experiments import data as datasets
    from experiments.devices import check_device

    for section in ("optimizer", "train", "schedule"):
        check_ranges(file, section, config[section])
    _check_choice(file, "optimizer.name", config["optimizer"]["name"], OPTIMIZER_KEYS, "optimizer")
    schedule = config["schedule"]
    _check_choice(file, "schedule.name", schedule["name"], SCHEDULE_KEYS, "schedule")
    if schedule["name"] == "step" and not schedule.get("step_epochs"):
        raise ConfigError(file, "schedule.step_epochs", "expected a non-empty list of positive epoch numbers")

    data = config["data"]
    try:
        shape = (describe or datasets.describe_dataset)(data)
    except (nets.ParamError, datasets.DataError) as e:
        raise ConfigError(file, f"data.{e.key}" if e.key else "data", e.message) from None

    net = config["net"]
    try:
        nets.check_params(net["name"], net, shape.info)
    except KeyError as e:
        raise ConfigError(file, "net.name", e.args[0]) from None
    except nets.ParamError as e:
        hint = ""
        if e.key == "name" and data.get("as_images") is False and "image" in nets.get_spec(net["name"]).kinds:
            hint = " (set data.as_images = true)"
        raise ConfigError(file, f"net.{e.key}", e.message + hint) from None
    except ValueError as e:  # a net's own check that names no key
        raise ConfigError(file, "net", str(e)) from None

    train = config["train"]
    n_train, _ = shape.split_sizes(data["val_fraction"])
    if train["batch_size"] > n_train:
        raise ConfigError(file, "train.batch_size", f"{train['batch_size']} is larger than the {n_train} training "
                                                    f"samples of {data['name']} ({shape.n_samples} samples, "
                                                    f"val_fraction {data['val_fraction']:g})")
    try:
        check_device(train["device"])
    except ValueError as e:
        raise ConfigError(file, "train.device", str(e)) from None
    return shape


def _cached(function):
    """`function(params)` memoised on the params' JSON: a grid describes the same dataset once."""
    results = {}

    def cached(params):
        key = json.dumps(params, sort_keys=True)
        if key not in results:
            results[key] = function(params)
        return results[key]
    return cached


def load_experiment(path, overrides: list[str] = ()) -> tuple[str, dict, list[dict]]:
    """Read, override, expand and validate an experiment file: (name, raw config after overrides, resolved runs).
    Raises ConfigError on the first problem; nothing is created."""
    from experiments.data import describe_dataset

    original = read_experiment_file(path)
    raw = apply_overrides(original, list(overrides), path)
    name = experiment_name(raw, path)
    planned = plan_runs(raw, path)
    describe = _cached(describe_dataset)
    runs = [resolve_run(run, path, name, describe) for run in planned]
    check_distinct(path, original, raw, list(overrides), planned, runs)
    return name, raw, runs


def check_distinct(file, original: dict, raw: dict, overrides: list[str], planned: list[dict],
                   runs: list[dict]) -> None:
    """Two runs of one grid with the same resolved config would train the same thing twice: a grid value the runs do
    not use (momentum for adam), or a --set that flattened a section axis (`original` is the file before the
    overrides, `raw` after them)."""
    seen = {}
    for index, run in enumerate(runs):
        first = seen.setdefault(json.dumps(run, sort_keys=True), index)
        if first == index:
            continue
        for text in overrides:
            key, value = parse_override(text, file)
            section, _, name = key.partition(".")
            tables = section_axis(original, section)
            if tables:
                # the example: the table that already had this value (adam's own lr for --set optimizer.name=adam)
                example = next((new for old, new in zip(tables, section_axis(raw, section)) if old.get(name) == value),
                               section_axis(raw, section)[0])
                raise ConfigError(file, f"--set {key}", f"set in each of the {len(tables)} tables of the grid axis "
                                                        f"\"{section}\", it makes runs {first + 1} and {index + 1} "
                                                        f"identical; to run one {section}, replace the axis instead: "
                                                        f"--set 'grid.{section}=[{_inline_toml(example)}]'")
        repeated = [(axis, value) for axis, values in raw.get("grid", {}).items() for value in values
                    if sum(json.dumps(v, sort_keys=True) == json.dumps(value, sort_keys=True) for v in values) > 1]
        if repeated:
            axis, value = repeated[0]
            raise ConfigError(file, f"grid.{axis}", f"lists {_inline_toml(value)} more than once: runs {first + 1} and "
                                                    f"{index + 1} would train the same thing (for repeats, vary "
                                                    "train.seed)")
        unused = [f"{section}.{key}" for section, table in planned[index].items()
                  for key in sorted(set(table) | set(planned[first][section]))
                  if table.get(key) != planned[first][section].get(key)]
        raise ConfigError(file, "grid", f"runs {first + 1} and {index + 1} are identical once resolved: they differ "
                                        f"only in {', '.join(unused) or 'nothing'}, which those runs do not use")


def _inline_toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline_toml(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)
