"""Decision boundaries of 2-D runs: the recorded grid is what the net itself predicts on those points."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import PROJECT, create_runs

mx = pytest.importorskip("mxnet")

from experiments.metrics import ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS  # noqa: E402

QUIET = lambda line: None  # noqa: E731


def cell_centres(payload):
    """Independent of experiments/boundary.py: the layout documented at ARTIFACT_BOUNDARY in experiments/metrics.py."""
    (x_lo, x_hi), (y_lo, y_hi), (nx, ny) = payload["x"], payload["y"], payload["size"]
    return np.array([[x_lo + (c + 0.5) * (x_hi - x_lo) / nx, y_hi - (r + 0.5) * (y_hi - y_lo) / ny]
                     for r in range(ny) for c in range(nx)], dtype="float32")


@pytest.mark.parametrize("dataset", ["spiral", "circles"])
def test_recorded_grid_agrees_with_the_nets_own_predictions(runs_dir, dataset):
    import nets
    from experiments.data import load_dataset
    from experiments.train import checkpoint_files, execute

    raw = {"data": {"name": dataset, "n_samples": 600}, "net": {"name": "mlp", "hidden": [16, 16]},
           "optimizer": {"name": "adam", "lr": 0.01},
           "train": {"epochs": 3, "batch_size": 32, "probe_every": 10}}
    store, (run_id,) = create_runs(runs_dir, raw)
    assert execute(store, run_id, log=QUIET) == "completed"
    run = store.get_run(run_id)
    frames = store.artifacts(run_id, ARTIFACT_BOUNDARY)
    assert [f["step"] for f in frames] == list(range(10, run["step"] + 1, 10)) + \
        ([run["step"]] if run["step"] % 10 else [])  # every probe, and the final one
    last = frames[-1]["payload"]
    assert last["size"] == [48, 48] and len(last["pred"]) == 48 and len(last["pred"][0]) == 48
    assert frames[0]["payload"]["pred"] != last["pred"]  # it moved while training

    # the final parameters (checkpointed after the last probe, no update in between) on the same points
    data = load_dataset(run["config"]["data"])
    net = nets.build_net("mlp", {"hidden": [16, 16]}, data.info)
    net.load_parameters(str(checkpoint_files(store.run_dir(run_id))[0]), ctx=mx.cpu())
    probabilities = mx.nd.softmax(net(mx.nd.array(cell_centres(last)))).asnumpy()
    assert np.array(last["pred"]).ravel().tolist() == probabilities.argmax(axis=1).tolist()
    assert np.abs(np.array(last["confidence"]).ravel() - 100 * probabilities.max(axis=1)).max() <= 0.5 + 1e-3

    points = store.latest_artifact(run_id, ARTIFACT_BOUNDARY_POINTS)["payload"]
    assert len(points["points"]) == len(points["labels"]) == data.n_train
    xs, ys = np.array(points["points"]).T
    assert last["x"][0] < xs.min() and xs.max() < last["x"][1] and last["y"][0] < ys.min() and ys.max() < last["y"][1]


def test_runs_on_other_inputs_record_no_boundary(runs_dir):
    from experiments.train import execute

    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "probe_every": 5}}
    store, (run_id,) = create_runs(runs_dir, raw)
    assert execute(store, run_id, log=QUIET) == "completed"
    assert store.artifacts(run_id, ARTIFACT_BOUNDARY) == []


def test_playground_is_width_by_activation():
    from experiments.config import load_experiment

    _, _, runs = load_experiment(PROJECT / "experiments" / "playground.toml")
    shapes = [(tuple(r["net"]["hidden"]), r["net"]["activation"]) for r in runs]
    widths = sorted({h for h, _ in shapes})
    assert all(len(h) == 1 for h in widths) and len(widths) >= 3  # one hidden layer, several widths
    assert {a for _, a in shapes} == {"relu", "tanh"} and len(set(shapes)) == len(shapes) == 2 * len(widths)
    assert all(r["data"]["name"] == "spiral" for r in runs)
