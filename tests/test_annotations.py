"""Detected events: each detector on series built to have (or lack) the event, and on real runs through the store."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import PROJECT, create_runs
from experiments import annotations as ann
from experiments.metrics import TRAIN_LOSS, VAL_LOSS, dead_key

QUIET = lambda line: None  # noqa: E731


def per_epoch(values, steps_per_epoch=10):
    return [(steps_per_epoch * (i + 1), float(i + 1), v) for i, v in enumerate(values)]


def test_the_module_imports_neither_mxnet_nor_textual():
    code = ("import sys, experiments.annotations; "
            "bad = [m for m in ('mxnet', 'textual') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dead_relu_first_probe_at_or_above_40_percent():
    series = {dead_key("hidden0"): [(10, 0.1, 0.05), (20, 0.2, 0.39), (40, 0.4, 0.42), (50, 0.5, 0.9)],
              dead_key("hidden1"): [(10, 0.1, 0.1), (20, 0.2, 0.39)]}
    (event,) = ann.dead_relu(series)
    assert event.text == "hidden0 passed 40% dead at step 40" and event.step == 40
    assert event.key == dead_key("hidden0")


def test_overfitting_needs_a_rise_after_the_minimum_and_says_so_when_train_loss_kept_falling():
    val = [1.0, 0.6, 0.4, 0.35, 0.3, 0.29, 0.28, 0.31, 0.34, 0.38]  # best at epoch 7
    train = [(s, e, 1.0 / s) for s, e, _ in per_epoch(val)]  # falling all along
    (event,) = ann.overfitting({VAL_LOSS: per_epoch(val), TRAIN_LOSS: train})
    assert event.text == "val loss rising since epoch 7 (overfitting)" and event.epoch == 7 and event.step == 70
    rising_train = [(s, e, float(s)) for s, e, _ in per_epoch(val)]
    assert ann.overfitting({VAL_LOSS: per_epoch(val), TRAIN_LOSS: rising_train})[0].text == \
        "val loss rising since epoch 7"  # worse on both: not called overfitting
    assert ann.overfitting({VAL_LOSS: per_epoch(val[:8])}) == []  # one epoch past the best: too early to say
    assert ann.overfitting({VAL_LOSS: per_epoch(val[:7] + [0.285, 0.285, 0.288])}) == []  # within 5% of the best


def test_best_lr_from_a_range_test_and_from_a_sweep():
    (event,) = ann.best_lr({"lr": 0.01, "optimizer": "adam"})
    assert event.text == "best LR 0.01 (adam)" and event.lr == 0.01
    assert ann.best_lr({"lr": None, "optimizer": "adam"}) == []
    runs = [{"optimizer": "adam", "lr": lr, "status": status, "train_loss": loss, "kind": "train"}
            for lr, loss, status in ((0.001, 0.4, "completed"), (0.01, 0.05, "completed"), (0.1, 0.01, "diverged"))]
    runs.append({"optimizer": "sgd", "lr": 0.1, "status": "completed", "train_loss": 0.4, "kind": "train"})
    assert [e.text for e in ann.sweep_best_lr(runs)] == ["best LR 0.01 (adam)", "best LR 0.1 (sgd)"]


def test_real_runs_diverged_and_clean(runs_dir):
    pytest.importorskip("mxnet")
    from experiments.store import Store
    from experiments.train import execute

    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [64], "activation": "leaky_relu"},
           "train": {"epochs": 3, "batch_size": 32, "log_every": 2},
           "grid": {"optimizer": [{"name": "momentum", "lr": 50.0}, {"name": "adam", "lr": 0.003}]}}
    store, (diverging, clean) = create_runs(runs_dir, raw)
    assert execute(store, diverging, log=QUIET) == "diverged"
    assert execute(store, clean, log=QUIET) == "completed"
    store = Store(runs_dir)
    run = store.get_run(diverging)
    events = ann.annotations_for_run(store, run)
    assert [e.text for e in events] == [f"diverged at step {run['diverged_step']}"]
    assert ann.annotations_for_run(store, store.get_run(clean)) == []
