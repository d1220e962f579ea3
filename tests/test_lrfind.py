"""The LR range test: its schedule, its smoothing and stop rule, its suggestion against a real sweep, its command."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROJECT, create_runs
from experiments import lrfind
from experiments.config import load_experiment
from experiments.metrics import ARTIFACT_LR_SUGGESTION, LR, LRFIND_KIND, SMOOTHED_LOSS, TRAIN_LOSS
from experiments.store import Store

QUIET = lambda line: None  # noqa: E731
LR_SWEEP = PROJECT / "experiments" / "lr_sweep.toml"
FAST_TEST = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [32]},
             "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"batch_size": 64}}


def create_range_tests(runs_dir, raw, settings):
    """As `mxdash lrfind` does: plan from the resolved runs, create, mark the kind."""
    from experiments.config import plan_runs, resolve_run

    runs = [resolve_run(run, None, "t") for run in plan_runs(raw)]
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment("t-lrfind", None, raw, {}, lrfind.plan_range_tests(runs, settings))
    for run_id in run_ids:
        store.update_run(run_id, kind=LRFIND_KIND)
    return store, run_ids


def series(store, run_id, key):
    return [row[5] for row in store.metrics_since(run_id, keys=[key])]


# -- pure parts ------------------------------------------------------------------------------------------------------
def test_schedule_formula_is_geometric_from_low_to_high():
    lrs = [lrfind.schedule_lr(step, 1e-7, 10.0, 100) for step in range(1, 101)]
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    assert np.allclose(ratios, (10.0 / 1e-7) ** (1 / 99), rtol=1e-9)
    assert lrfind.schedule_lr(500, 1e-7, 10.0, 100) == pytest.approx(10.0)  # held at the top past the end


def test_smoothing_is_the_debiased_ema_and_the_stop_rule_fires_at_4x_the_best():
    rng = np.random.RandomState(0)
    losses = list(2.0 + rng.rand(30))
    beta = 0.98
    expected, mean = [], 0.0
    for t, loss in enumerate(losses, start=1):  # independent: the textbook formula
        mean = beta * mean + (1 - beta) * loss
        expected.append(mean / (1 - beta ** t))
    assert np.allclose(lrfind.smooth(losses, beta), expected)
    assert lrfind.smooth([3.0] * 5, beta) == pytest.approx([3.0] * 5)  # debiased: no warm-up from 0

    curve = lrfind.Curve(beta=0.0, stop_factor=4.0)  # beta 0: the smoothed loss is the loss itself
    assert [curve.add(1.0, loss) for loss in (2.0, 1.0, 3.9, 4.1)] == [False, False, False, True]
    assert lrfind.Curve(0.5, 4.0).add(1.0, float("nan")) is True


def test_rules_on_a_known_curve():
    lrs = list(np.logspace(-6, 1, 71))  # 10 points per decade
    # loss falls fastest around lr 1e-3 (a tanh step in log lr), is lowest at 1e-1, rises after
    log_lr = np.log10(lrs)
    loss = 2.0 - np.tanh((log_lr + 3) * 2) + 0.5 * np.maximum(log_lr + 1, 0) ** 2 - 0.01 * np.minimum(log_lr + 1, 0)
    found = lrfind.suggestion(lrs, list(loss), "minimum")
    assert found["min_loss_lr"] == pytest.approx(0.1, rel=0.01)
    assert found["lr"] == pytest.approx(0.01, rel=0.01)  # minimum / 10
    assert found["steep_lr"] == pytest.approx(1e-3, rel=0.3)
    assert lrfind.suggestion(lrs, list(loss), "steep")["lr"] == found["steep_lr"]
    flat = lrfind.suggestion(lrs, [2.0 + 0.1 * i for i in range(71)], "minimum")
    assert flat["lr"] is None and "never fell" in flat["reason"]


def test_plan_is_one_test_per_optimizer_of_the_sweep():
    _, _, runs = load_experiment(LR_SWEEP)
    plans = lrfind.plan_range_tests(runs, {})
    assert len(runs) == 28 and [p["optimizer"]["name"] for p in plans] == ["sgd", "momentum", "adam", "rmsprop"]
    assert all(p["optimizer"]["lr"] == 1e-7 and p[LRFIND_KIND] == lrfind.DEFAULTS for p in plans)
    _, _, playground = load_experiment(PROJECT / "experiments" / "playground.toml")
    assert len(lrfind.plan_range_tests(playground, {})) == len(playground)  # other axes stay apart
    for bad, word in (({"low": 1.0, "high": 0.1}, "low"), ({"steps": 3}, "steps"), ({"rule": "valley"}, "rule")):
        with pytest.raises(lrfind.LRFindError, match=word):
            lrfind.plan_range_tests(runs, bad)


# -- the loop --------------------------------------------------------------------------------------------------------
def test_recorded_schedule_is_exponential_between_the_bounds(runs_dir):
    from experiments.train import execute

    raw = {**FAST_TEST, "optimizer": {"name": "adam"}}
    store, (run_id,) = create_range_tests(runs_dir, raw, {"low": 1e-5, "high": 1.0, "steps": 40})
    assert execute(store, run_id, log=QUIET) == "completed"
    lrs = series(store, run_id, LR)
    steps = [row[1] for row in store.metrics_since(run_id, keys=[LR])]
    assert steps == list(range(1, len(lrs) + 1))
    assert lrs[0] == pytest.approx(1e-5)
    assert np.allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), (1.0 / 1e-5) ** (1 / 39), rtol=1e-6)
    run = store.get_run(run_id)
    found = store.latest_artifact(run_id, ARTIFACT_LR_SUGGESTION)["payload"]
    if not found["stopped_early"]:
        assert len(lrs) == 40 and lrs[-1] == pytest.approx(1.0)
    assert found["lr"] is not None, found  # adam's loss falls well inside 1e-5..1
    assert run["kind"] == LRFIND_KIND and run["total_steps"] == 40 and run["lr"] == pytest.approx(found["lr"])
    assert len(series(store, run_id, TRAIN_LOSS)) == len(series(store, run_id, SMOOTHED_LOSS)) == len(lrs)


def test_the_optimizer_really_applies_the_scheduled_lr(runs_dir):
    """Plain SGD, no weight decay: each update is w <- w - lr * grad / batch_size, so the LR MXNet applied can be
    read back from the weights; it must be the schedule's."""
    import mxnet as mx

    from experiments.range_test import RangeTest

    store, (run_id,) = create_range_tests(runs_dir, FAST_TEST, {"low": 1e-3, "high": 1.0, "steps": 10})
    test = RangeTest(store, run_id, log=QUIET)
    weight = test.net.collect_params()["hidden0_weight"]
    batches = test.data.train_batches(0, test.batch_size, test.data_ctx)
    for step in range(1, 6):
        x, y, valid_length = next(batches)
        before = weight.data().asnumpy().copy()
        test.train_step(x, y, valid_length)
        grad = weight.grad().asnumpy()
        mask = np.abs(grad) > 1e-4 * np.abs(grad).max()
        applied = (before - weight.data().asnumpy())[mask] / (grad[mask] / test.batch_size)
        assert np.median(applied) == pytest.approx(lrfind.schedule_lr(step, 1e-3, 1.0, 10), rel=1e-3)
    mx.nd.waitall()


@pytest.fixture(scope="module")
def sweep_and_range_tests(tmp_path_factory):
    """experiments/lr_sweep.toml for adam and sgd (14 runs, in-process) and `mxdash lrfind` on the same file."""
    from experiments.cli import main
    from experiments.train import execute

    runs_dir = tmp_path_factory.mktemp("sweep") / "runs"
    only = ['--set', 'grid.optimizer.name=["sgd", "adam"]']
    name, raw, runs = load_experiment(LR_SWEEP, [only[1]])
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(name, str(LR_SWEEP), raw, raw["grid"], runs)
    for run_id in run_ids:
        execute(store, run_id, log=QUIET)
    assert main(["lrfind", str(LR_SWEEP), *only, "--runs-dir", str(runs_dir)]) == 0
    return store


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_suggested_lr_is_within_3x_of_the_sweeps_best(sweep_and_range_tests, optimizer):
    store = sweep_and_range_tests
    swept = [r for r in store.list_runs() if r["kind"] != LRFIND_KIND and r["optimizer"] == optimizer]
    assert len(swept) == 7
    finished = [r for r in swept if r["status"] == "completed" and math.isfinite(r["train_loss"])]
    best = min(finished, key=lambda r: r["train_loss"])["lr"]
    (test,) = [r for r in store.list_runs() if r["kind"] == LRFIND_KIND and r["optimizer"] == optimizer]
    found = store.latest_artifact(test["id"], ARTIFACT_LR_SUGGESTION)["payload"]
    assert found["rule"] == "minimum"
    assert best / 3 <= found["lr"] <= best * 3, (optimizer, found, best)


def test_lrfind_command_as_a_user(tmp_path):
    """The real console script: one line per test in a table, the hint, the runs in `mxdash ls --json`; bad
    options fail with exit code 2 and one line naming the option, creating nothing."""
    mxdash = [str(PROJECT / ".venv" / "bin" / "mxdash")] if (PROJECT / ".venv" / "bin" / "mxdash").exists() \
        else [sys.executable, "-m", "experiments.cli"]
    runs_dir = tmp_path / "runs"
    env_cols = {"COLUMNS": "80", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*mxdash, "lrfind", str(LR_SWEEP), "--set", 'grid.optimizer.name=["adam"]', "--steps", "50",
                           "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=300, cwd=PROJECT,
                          env=env_cols)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    command = [line for line in lines if line.startswith("  mxdash run ")]  # soft-wrapped: copies as one line
    assert len(command) == 1 and all(len(line) <= 80 for line in lines if line not in command), lines
    assert "lr_sweep-lrfind-1: 1 LR range test, lr 1e-07 to 10 in 50 steps" in lines[0]
    assert any("lr_sweep-lrfind-1.1" in line and "adam" in line for line in lines)
    assert "mxdash run" in done.stdout and "optimizer.name=adam" in done.stdout
    listed = json.loads(subprocess.run([*mxdash, "ls", "--json", "--runs-dir", str(runs_dir)], capture_output=True,
                                       text=True, timeout=60, cwd=PROJECT, env=env_cols).stdout)
    assert [(r["id"], r["kind"], r["status"]) for r in listed] == [("lr_sweep-lrfind-1.1", LRFIND_KIND, "completed")]

    bad = subprocess.run([*mxdash, "lrfind", str(LR_SWEEP), "--low", "1", "--high", "0.1", "--runs-dir",
                          str(tmp_path / "other")], capture_output=True, text=True, timeout=120, cwd=PROJECT,
                         env=env_cols)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--low" in bad.stderr, bad.stderr
    assert not (tmp_path / "other").exists()


def test_a_worker_process_runs_a_range_test(runs_dir):
    """The dashboard's launch path: the ordinary worker process picks the range-test loop by the run's kind."""
    store, (run_id,) = create_range_tests(runs_dir, FAST_TEST, {"steps": 20})
    done = subprocess.run([sys.executable, "-m", "experiments.worker", run_id, "--runs-dir", str(runs_dir)],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert done.returncode == 0, done.stderr + done.stdout
    assert store.get_run(run_id)["status"] == "completed"
    assert store.latest_artifact(run_id, ARTIFACT_LR_SUGGESTION)["payload"]["steps_run"] <= 20
    assert len(series(store, run_id, LR)) == store.get_run(run_id)["step"]
