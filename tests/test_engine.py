"""The experiment engine trains real nets on small data: outcomes, not just "it ran"."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import create_runs

mx = pytest.importorskip("mxnet")

from experiments.store import Store  # noqa: E402
from experiments.train import Run, checkpoint_files, execute  # noqa: E402

QUIET = lambda line: None  # noqa: E731


def train(runs_dir, raw, name="t"):
    store, run_ids = create_runs(runs_dir, raw, name)
    statuses = [execute(store, run_id, log=QUIET) for run_id in run_ids]
    return store, run_ids, statuses


def losses(store, run_id, key="train_loss"):
    return [row[5] for row in store.metrics_since(run_id, keys=[key])]


@pytest.mark.parametrize("net, data, extra", [
    ({"name": "mlp", "hidden": [32]}, {"name": "digits"}, {}),
    ({"name": "cnn", "channels": [8, 16], "hidden": [32]}, {"name": "digits", "as_images": True}, {}),
    ({"name": "lstm", "embed": 16, "hidden": 32}, {"name": "tokens", "n_samples": 800}, {}),
    ({"name": "lstm", "hidden": 32}, {"name": "seq_digits"}, {}),
])
def test_loss_falls_and_accuracy_beats_chance(runs_dir, net, data, extra):
    raw = {"data": data, "net": net, "optimizer": {"name": "adam", "lr": 0.005},
           "train": {"epochs": 3, "batch_size": 32, "log_every": 5}}
    store, (run_id,), (status,) = train(runs_dir, raw)
    run = store.get_run(run_id)
    assert status == "completed", run["traceback"]
    curve = losses(store, run_id)
    assert np.mean(curve[-3:]) < 0.6 * np.mean(curve[:3]), curve
    classes = 10 if data["name"] != "tokens" else 2
    assert run["best_val_acc"] > 2.0 / classes if classes > 2 else run["best_val_acc"] > 0.75
    # the run row records provenance and the summary
    assert run["summary"]["total_params"] > 0 and run["versions"]["mxnet"] == mx.__version__
    assert run["step"] == run["total_steps"] and run["ended"] >= run["started"]
    keys = set(store.metric_keys(run_id))
    assert {"train_loss", "lr", "grad_norm", "samples_per_s", "val_loss", "val_acc"} <= keys


def test_adaptive_optimizers_beat_plain_sgd_on_the_shipped_experiment(runs_dir):
    from experiments.config import load_experiment
    from conftest import PROJECT

    name, raw, runs = load_experiment(PROJECT / "experiments" / "optimizers.toml")
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(name, None, raw, raw["grid"], runs)
    for run_id in run_ids:
        assert execute(store, run_id, log=QUIET) == "completed"
    final = {r["optimizer"]: r["train_loss"] for r in store.list_runs()}
    assert final["adam"] < 0.5 * final["sgd"] and final["rmsprop"] < 0.5 * final["sgd"], final


def hand_computed_dead_fraction(x, w, b):
    """Independent numpy: a unit is dead when relu(x @ w.T + b) is 0 for every sample."""
    hidden = np.maximum(x @ w.T + b, 0)
    return float(np.mean(hidden.max(axis=0) <= 0))


def test_dead_relu_fraction_equals_hand_computed_value(runs_dir):
    from experiments.probe import DeadReluProbe
    import nets

    info = nets.DataInfo(kind="vector", input_shape=(4,), num_classes=3)
    net = nets.build_net("mlp", {"hidden": [5, 4], "activation": "relu"}, info)
    net.initialize(mx.init.Normal(1.0))
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, size=(16, 4)).astype("float32")  # non-negative inputs
    net(mx.nd.array(x))
    params = {p.name: p for p in net.collect_params().values()}
    w0 = rng.normal(size=(5, 4)).astype("float32")
    b0 = np.array([-100, -100, 100, 100, -100], dtype="float32")  # units 0, 1, 4 never fire: 3/5 dead
    params["hidden0_weight"].set_data(mx.nd.array(w0))
    params["hidden0_bias"].set_data(mx.nd.array(b0))
    w1 = rng.normal(size=(4, 5)).astype("float32")
    b1 = np.array([-50, 0.2, -50, 0.3], dtype="float32")
    params["hidden1_weight"].set_data(mx.nd.array(w1))
    params["hidden1_bias"].set_data(mx.nd.array(b1))
    net.hybridize(static_alloc=True, static_shape=True)

    dead = DeadReluProbe(net, mx.nd.array(x)).read()
    h0 = np.maximum(x @ w0.T + b0, 0)
    assert dead["hidden0"] == pytest.approx(hand_computed_dead_fraction(x, w0, b0)) == pytest.approx(0.6)
    assert dead["hidden1"] == pytest.approx(hand_computed_dead_fraction(h0, w1, b1))
    assert set(dead) == {"hidden0", "hidden1"}


def test_dead_relu_probe_counts_conv_channels(runs_dir):
    from experiments.probe import DeadReluProbe
    import nets

    info = nets.DataInfo(kind="image", input_shape=(1, 8, 8), num_classes=10)
    net = nets.build_net("cnn", {"channels": [4], "kernels": [3], "hidden": [6]}, info)
    net.initialize(mx.init.Normal(0.5))
    x = mx.nd.random.uniform(0, 1, shape=(8, 1, 8, 8))
    net(x)
    params = {p.name: p for p in net.collect_params().values()}
    bias = params["conv0_bias"].data().asnumpy()
    bias[[0, 2]] = -1000.0  # channels 0 and 2 output 0 everywhere: half the channels dead
    bias[[1, 3]] = 1000.0
    params["conv0_bias"].set_data(mx.nd.array(bias))
    net.hybridize(static_alloc=True, static_shape=True)
    assert DeadReluProbe(net, x).read()["conv0"] == pytest.approx(0.5)


def test_huge_learning_rate_is_marked_diverged_and_keeps_its_metrics(runs_dir):
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [64], "activation": "leaky_relu"},
           "optimizer": {"name": "momentum", "lr": 50.0}, "train": {"epochs": 3, "batch_size": 32, "log_every": 2}}
    store, (run_id,), (status,) = train(runs_dir, raw)
    run = store.get_run(run_id)
    assert status == "diverged" and run["status"] == "diverged"
    assert 0 < run["diverged_step"] <= run["step"] < run["total_steps"]
    recorded = losses(store, run_id)
    assert len(recorded) >= 1 and recorded[-1] is None  # NaN is stored as NULL; earlier rows stay


def test_diverge_factor_marks_an_exploding_loss(runs_dir):
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [64]},
           "optimizer": {"name": "momentum", "lr": 30.0},
           "train": {"epochs": 3, "batch_size": 64, "log_every": 2, "diverge_factor": 10.0}}
    store, (run_id,), (status,) = train(runs_dir, raw)
    assert status == "diverged"
    recorded = losses(store, run_id)
    reference = min(recorded[:-1] + [np.log(10)])  # best so far, capped by chance level (10 classes)
    assert recorded[-1] > 10 * reference
    assert store.get_run(run_id)["diverged_step"] == store.metrics_since(run_id, keys=["train_loss"])[-1][1]


def final_params(run: Run) -> dict:
    return {name: p.data(run.ctxs[0]).asnumpy() for name, p in run.net.collect_params().items()}


@pytest.mark.parametrize("dropout, stop_at", [
    (0.0, 37),  # mid-epoch (28 steps per epoch): the position inside the epoch is restored too
    (0.3, 56),  # dropout: exact from an epoch boundary (the dropout RNG is reseeded per epoch, not per step)
])
def test_resume_equals_uninterrupted(runs_dir, monkeypatch, dropout, stop_at):
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [32], "dropout": dropout},
           "optimizer": {"name": "adam", "lr": 0.01}, "schedule": {"name": "cosine", "warmup_steps": 10},
           "train": {"epochs": 4, "batch_size": 50, "seed": 3},
           "grid": {"experiment.description": ["uninterrupted", "stopped and resumed"]}}
    store, (straight_id, resumed_id) = create_runs(runs_dir, raw)
    assert execute(store, straight_id, log=QUIET) == "completed"

    original_step = Run.train_step

    def stopping_step(self, *args):
        out = original_step(self, *args)
        if self.step + 1 == stop_at:
            self.stop.requested = True
        return out

    monkeypatch.setattr(Run, "train_step", stopping_step)
    assert execute(store, resumed_id, log=QUIET) == "stopped"
    assert store.get_run(resumed_id)["step"] <= stop_at
    monkeypatch.setattr(Run, "train_step", original_step)
    assert store.requeue(resumed_id)  # what `mxdash resume` does
    assert execute(store, resumed_id, log=QUIET) == "completed"

    straight = mx.nd.load(str(checkpoint_files(store.run_dir(straight_id))[0]))
    resumed = mx.nd.load(str(checkpoint_files(store.run_dir(resumed_id))[0]))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert np.array_equal(straight[key].asnumpy(), resumed[key].asnumpy()), key
    a, b = losses(store, straight_id), losses(store, resumed_id)
    assert a == pytest.approx(b, rel=1e-6) and len(a) == len(b)  # rows past the checkpoint were not duplicated


def test_two_cpu_contexts_give_the_same_parameters_as_one(runs_dir):
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [32]},
           "optimizer": {"name": "momentum", "lr": 0.05}, "train": {"epochs": 2, "batch_size": 64},
           "grid": {"train.device": ["cpu", "cpu:0,1"]}}
    store, (single, double), statuses = train(runs_dir, raw)
    assert statuses == ["completed", "completed"]
    assert store.get_run(double)["device"] == "cpu(0),cpu(1)"
    one = mx.nd.load(str(checkpoint_files(store.run_dir(single))[0]))
    two = mx.nd.load(str(checkpoint_files(store.run_dir(double))[0]))
    for key in one:
        np.testing.assert_allclose(one[key].asnumpy(), two[key].asnumpy(), atol=1e-5, rtol=1e-4)


def test_schedule_is_applied_and_recorded(runs_dir):
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [16]},
           "optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "step", "step_epochs": [1], "factor": 0.1},
           "train": {"epochs": 2, "batch_size": 64, "log_every": 4}}
    store, (run_id,), _ = train(runs_dir, raw)
    rows = store.metrics_since(run_id, keys=["lr"])
    steps_per_epoch = store.get_run(run_id)["total_steps"] // 2
    before = [r[5] for r in rows if r[1] <= steps_per_epoch]
    after = [r[5] for r in rows if r[1] > steps_per_epoch + 1]
    assert before and after and max(before) == pytest.approx(0.1) and max(after) == pytest.approx(0.01)


def test_a_stop_requested_through_the_store_alone_is_honoured_with_short_epochs(runs_dir):
    """The only stop a run on another machine gets is the store's flag (no signal). Epochs here take well under a
    second, and the flush before each epoch checkpoint used to reset the clock the flag was read on: the run
    trained to the end."""
    import threading
    import time

    store, (run_id,) = create_runs(runs_dir, {"train": {"epochs": 200, "batch_size": 16}})
    reader = Store(runs_dir)

    def stop_after_some_steps():
        while (reader.get_run(run_id)["step"] or 0) < 50:
            time.sleep(0.02)
        reader.request_stop(run_id)

    threading.Thread(target=stop_after_some_steps, daemon=True).start()
    assert execute(store, run_id, log=QUIET) == "stopped"
    run = store.get_run(run_id)
    assert 50 <= run["step"] < run["total_steps"] // 2
