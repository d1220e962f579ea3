"""Weights count: the recorded parameter count equals a hand count, is shown by ls/compare, and the shipped
experiment shows a CNN matching a dense net with far fewer weights."""
from __future__ import annotations

import json

import pytest
from rich.console import Console

from conftest import PROJECT, create_runs

mx = pytest.importorskip("mxnet")

QUIET = lambda line: None  # noqa: E731


def dense(inputs, units):
    return inputs * units + units  # weights + biases


def hand_count_mlp(inputs, hidden, classes):
    sizes = [inputs, *hidden]
    return sum(dense(a, b) for a, b in zip(sizes, sizes[1:])) + dense(sizes[-1], classes)


def hand_count_cnn(side, channels, kernel, classes, in_channels=1):
    """3x3 'same' convolutions, each followed by a 2x2 max pool, then one dense layer to the classes."""
    total, previous = 0, in_channels
    for c in channels:
        total += c * previous * kernel * kernel + c
        previous, side = c, side // 2
    return total + dense(previous * side * side, classes)


def test_weights_count_equals_a_hand_count(runs_dir):
    from experiments.train import execute

    raw = {"data": {"name": "digits", "as_images": True}, "train": {"epochs": 1},
           "grid": {"net": [{"name": "mlp", "hidden": [30, 20]}, {"name": "cnn", "channels": [4, 6], "hidden": []}]}}
    store, (mlp, cnn) = create_runs(runs_dir, raw)
    for run_id in (mlp, cnn):
        assert execute(store, run_id, log=QUIET) == "completed"
    assert store.get_run(mlp)["summary"]["total_params"] == hand_count_mlp(64, [30, 20], 10) == 2_780
    assert store.get_run(cnn)["summary"]["total_params"] == hand_count_cnn(8, [4, 6], 3, 10) == 512

    from experiments.report import render_compare

    console = Console(record=True, width=80)
    console.print(render_compare(store, store.resolve([mlp, cnn]), weights=True))
    params_row = next(line for line in console.export_text().splitlines() if "params" in line)
    assert "2,780" in params_row and "512" in params_row


def test_shipped_experiment_cnn_matches_dense_with_far_fewer_weights(runs_dir):
    from experiments.config import load_experiment
    from experiments.store import Store
    from experiments.train import execute

    name, raw, runs = load_experiment(PROJECT / "experiments" / "weights.toml")
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(name, None, raw, raw["grid"], runs)
    for run_id in run_ids:
        assert execute(store, run_id, log=QUIET) == "completed"
    big_dense, cnn, small_dense = store.resolve(run_ids)
    assert (big_dense["net"], cnn["net"], small_dense["net"]) == ("mlp", "cnn", "mlp")
    weights = {run["id"]: run["summary"]["total_params"] for run in (big_dense, cnn, small_dense)}
    assert weights[cnn["id"]] == hand_count_cnn(8, [16, 32], 3, 10) == 6_090
    assert weights[big_dense["id"]] == hand_count_mlp(64, [512, 256], 10) == 167_178
    assert weights[big_dense["id"]] >= 20 * weights[cnn["id"]]
    assert cnn["best_val_acc"] >= big_dense["best_val_acc"] - 0.01  # matches: within 1% (3-4 of 359 digits)
    assert abs(weights[small_dense["id"]] - weights[cnn["id"]]) < 0.2 * weights[cnn["id"]]  # the same budget


def mxdash(*args, columns: int = 80):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT, timeout=120, env={**os.environ, "COLUMNS": str(columns)})


def test_ls_shows_the_weights_count_where_it_fits(runs_dir):
    from experiments.store import Store

    store = Store(runs_dir, create=True)
    config = {"net": {"name": "mlp"}, "data": {"name": "digits"}, "optimizer": {"name": "adam", "lr": 0.01},
              "train": {"seed": 0, "device": "cpu", "epochs": 1}}
    _, (run_id,) = store.create_experiment("w", None, config, {}, [config])
    store.update_run(run_id, summary={"total_params": 1_234_567})
    wide = mxdash("ls", "--runs-dir", runs_dir, columns=120)
    assert "params" in wide.stdout and "1,234,567" in wide.stdout
    listed = json.loads(mxdash("ls", "--json", "--runs-dir", runs_dir).stdout)
    assert listed[0]["params"] == 1_234_567
    narrow = mxdash("ls", "--runs-dir", runs_dir, columns=56)  # 62 with the count, even with short headers
    assert run_id in narrow.stdout and "1,234,567" not in narrow.stdout and "…" not in narrow.stdout, narrow.stdout
