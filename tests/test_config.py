"""Bad input: one clear message naming the file and key, exit code 2, and no run created."""
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


def run_in_process(tmp_path, capsys, text, *extra):
    """The same `mxdash run` entry point, called in-process (a subprocess per case costs an mxnet import)."""
    from experiments.cli import main

    path = tmp_path / "exp.toml"
    path.write_text(text)
    runs = tmp_path / "runs"
    code = main(["run", str(path), "--runs-dir", str(runs), *extra])
    return code, capsys.readouterr().err, runs, path


BAD_CASES = [
    ("unknown section", GOOD + "[model]\nx = 1\n", "model: unknown section"),
    ("unknown key", GOOD.replace("epochs = 1", "epochs = 1\nepoch = 2"), "train.epoch: unknown key"),
    ("unknown net", GOOD.replace('name = "mlp"', 'name = "resnet"'), "net.name: unknown net 'resnet'"),
    ("unknown net key", GOOD.replace("hidden = [16]", "hiden = [16]"), "net.hiden: unknown key"),
    ("unknown dataset", GOOD.replace('name = "digits"', 'name = "cifar"'), "data.name: unknown dataset 'cifar'"),
    ("unknown optimizer", GOOD.replace('name = "adam"', 'name = "adamw"'), "optimizer.name: unknown optimizer"),
    ("wrong type", GOOD.replace("epochs = 1", 'epochs = "ten"'), "train.epochs: expected an integer, got 'ten'"),
    ("wrong type float", GOOD.replace("lr = 0.01", 'lr = "fast"'), "optimizer.lr: expected a number"),
    ("non-positive lr", GOOD.replace("lr = 0.01", "lr = -0.1"), "optimizer.lr: expected a positive number"),
    ("zero lr", GOOD.replace("lr = 0.01", "lr = 0"), "optimizer.lr: expected a positive number"),
    ("non-positive batch size", GOOD.replace("epochs = 1", "epochs = 1\nbatch_size = 0"),
     "train.batch_size: expected a positive integer"),
    ("non-positive epochs", GOOD.replace("epochs = 1", "epochs = -3"), "train.epochs: expected a positive integer"),
    ("empty grid axis", GOOD + '[grid]\n"optimizer.lr" = []\n', "grid.optimizer.lr: empty grid axis"),
    ("grid not a list", GOOD + '[grid]\n"optimizer.lr" = 0.1\n', "grid.optimizer.lr: expected a list"),
    ("grid bad key", GOOD + '[grid]\n"lr" = [0.1]\n', "grid.lr: grid keys are dotted paths"),
    ("grid bad value", GOOD + '[grid]\n"optimizer.lr" = [0.1, -1.0]\n', "optimizer.lr: expected a positive number"),
    ("unknown device", GOOD.replace("epochs = 1", 'epochs = 1\ndevice = "tpu:0"'), "train.device: expected auto, cpu"),
    ("gpu not there", GOOD.replace("epochs = 1", 'epochs = 1\ndevice = "gpu:0"'), "train.device: device 'gpu:0' asks"),
    ("bad toml", GOOD + "[grid\n", "invalid TOML"),
    ("bad schedule", GOOD + '[schedule]\nname = "exp"\n', "schedule.name: unknown schedule 'exp'"),
]


@pytest.mark.parametrize("label, text, message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_message_and_creates_no_run(tmp_path, capsys, label, text, message):
    code, stderr, runs, path = run_in_process(tmp_path, capsys, text)
    assert code == 2, stderr
    assert message in stderr and str(path) in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert not runs.exists()  # nothing half-written


def test_bad_input_from_the_console_script(tmp_path):
    result, runs, path = run_file(tmp_path, GOOD.replace("lr = 0.01", "lr = -0.1"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"mxdash run: {path}: optimizer.lr: expected a positive number, got -0.1"
    assert not runs.exists()


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
