"""Experiment files: overrides, grid expansion, the validation rules as functions (the refusals themselves, through
the console script, are in test_bad_input.py)."""
from __future__ import annotations

import json

import pytest

from conftest import cli
from experiments.config import apply_overrides, parse_override, plan_runs

GOOD = """
[data]
name = "digits"
[net]
name = "mlp"
hidden = [16]
[optimizer]
name = "adam"
lr = 0.01
[train]
epochs = 1
"""


def run_file(tmp_path, text, *extra):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    runs = tmp_path / "runs"
    return cli("run", path, "--runs-dir", runs, *extra), runs, path


def test_missing_file_and_bad_override(tmp_path):
    result = cli("run", tmp_path / "nope.toml", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "no such experiment file" in result.stderr
    result, runs, _ = run_file(tmp_path, GOOD, "--set", "optimizer.lr=-1")
    assert result.returncode == 2 and "optimizer.lr: expected a positive number" in result.stderr
    result, runs, _ = run_file(tmp_path, GOOD, "--set", "nosection=3")
    assert result.returncode == 2 and "--set keys are section.key" in result.stderr
    assert not runs.exists()


def test_dry_run_plans_the_grid_and_creates_nothing(tmp_path):
    text = GOOD + '[grid]\n"optimizer.name" = ["sgd", "adam"]\n"optimizer.lr" = [0.1, 0.01, 0.001]\n'
    result, runs, _ = run_file(tmp_path, text, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)["runs"]
    assert [(r["optimizer"]["name"], r["optimizer"]["lr"]) for r in planned] == [
        ("sgd", 0.1), ("sgd", 0.01), ("sgd", 0.001), ("adam", 0.1), ("adam", 0.01), ("adam", 0.001)]
    assert "momentum" not in planned[0]["optimizer"] and planned[3]["optimizer"]["beta1"] == 0.9
    assert not runs.exists()


def test_overrides_and_section_axes():
    assert parse_override("net.hidden=[8, 8]") == ("net.hidden", [8, 8])
    assert parse_override("net.activation=relu") == ("net.activation", "relu")
    raw = {"optimizer": {"name": "sgd"}, "grid": {"optimizer.lr": [0.1, 0.2], "net.hidden": [[4], [8]]}}
    fixed = apply_overrides(raw, ["optimizer.lr=0.5"])
    assert "optimizer.lr" not in fixed["grid"] and len(plan_runs(fixed)) == 2  # setting a grid key fixes it
    paired = {"grid": {"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.001}]}}
    assert [r["optimizer"] for r in plan_runs(paired)] == [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": 0.001}]


def test_every_shipped_experiment_validates(tmp_path):
    from conftest import PROJECT

    for path in sorted((PROJECT / "experiments").glob("*.toml")):
        result = cli("run", path, "--dry-run", "--runs-dir", tmp_path / "runs")
        assert result.returncode == 0, (path, result.stderr)
    assert not (tmp_path / "runs").exists()


def test_mnist_without_files_is_refused_before_creating_runs(tmp_path):
    result, runs, path = run_file(tmp_path, GOOD.replace('name = "digits"', f'name = "mnist"\nroot = "{tmp_path}/m"'))
    # the dataset's own check runs at validation: refused, naming the key, the directory and the files
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"mxdash run: {path}: data.root: MNIST files missing in {tmp_path}/m: ")
    assert "train-images-idx3-ubyte.gz" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not runs.exists()


def test_set_on_a_section_axis_applies_to_every_table(tmp_path):
    from conftest import PROJECT

    result = cli("run", PROJECT / "experiments" / "optimizers.toml", "--set", "optimizer.lr=0.01", "--dry-run",
                 "--json", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)["runs"]
    assert [(r["optimizer"]["name"], r["optimizer"]["lr"]) for r in planned] == [
        ("sgd", 0.01), ("momentum", 0.01), ("nesterov", 0.01), ("adam", 0.01), ("rmsprop", 0.01)]
    raw = {"grid": {"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam"}]}}
    assert [r["optimizer"] for r in plan_runs(apply_overrides(raw, ["optimizer.wd=0.5"]))] == [
        {"name": "sgd", "lr": 0.1, "wd": 0.5}, {"name": "adam", "wd": 0.5}]
    assert raw["grid"]["optimizer"][1] == {"name": "adam"}  # the caller's dict is not modified


def test_grid_size_is_counted_before_expanding():
    from experiments.config import MAX_RUNS, ConfigError, check_structure

    axis = list(range(1000))
    huge = {"grid": {"train.seed": axis, "train.epochs": axis, "train.log_every": axis}}  # 10^9 runs
    with pytest.raises(ConfigError, match="1,000,000,000 runs"):
        plan_runs(huge)
    check_structure({"grid": {"train.seed": list(range(MAX_RUNS))}})  # exactly the cap is allowed


def test_validate_config_accepts_a_resolved_config_and_refuses_a_changed_one():
    """`validate_config` is a function of the resolved config: a stored run's config validates as it is."""
    from experiments.config import ConfigError, resolve_run, validate_config

    config = resolve_run(plan_runs({"net": {"hidden": [8]}, "optimizer": {"name": "sgd"}})[0])
    assert validate_config(config).n_samples == 1797
    assert resolve_run(config, name=config["experiment"]["name"]) == config  # resolving is idempotent
    config["optimizer"]["lr"] = float("nan")
    with pytest.raises(ConfigError, match="optimizer.lr"):
        validate_config(config)


def test_validation_describes_each_dataset_once_per_grid(monkeypatch):
    """A grid of 30 runs on one dataset reads its description (files and headers, for MNIST) once."""
    from experiments import config, data

    calls = []
    original = data.describe_dataset
    monkeypatch.setattr(data, "describe_dataset", lambda params: calls.append(params) or original(params))
    path_raw = {"net": {"hidden": [8]}, "grid": {"optimizer.lr": [0.1, 0.2, 0.3], "train.seed": list(range(10))}}
    monkeypatch.setattr(config, "read_experiment_file", lambda path: path_raw)
    _, _, runs = config.load_experiment("grid.toml")
    assert len(runs) == 30 and len(calls) == 1
