"""The artifacts table: written with the metric batch they belong to, read back decoded, gone with their run."""
from __future__ import annotations

import pytest

from experiments.metrics import TRAIN_KIND
from experiments.store import Store


def make_run(store):
    config = {"net": {"name": "mlp"}, "data": {"name": "digits"}, "optimizer": {"name": "adam", "lr": 0.01},
              "train": {"seed": 0, "device": "cpu", "epochs": 1}}
    _, (run_id,) = store.create_experiment("a", None, config, {}, [config])
    return run_id


def test_artifacts_go_in_the_metric_batchs_transaction(tmp_path):
    store = Store(tmp_path / "runs", create=True)
    run_id = make_run(store)
    assert store.get_run(run_id)["kind"] == TRAIN_KIND  # the default kind
    store.append_metrics(run_id, [(10, 1.0, 0.5, "val_loss", 0.3)], {"step": 10},
                         artifacts=[(10, 1.0, 0.5, "confusion", {"matrix": [[1, 0], [2, 3]]})])
    (row,) = store.artifacts(run_id)
    assert (row["step"], row["epoch"], row["key"], row["payload"]) == (10, 1.0, "confusion", {"matrix": [[1, 0], [2, 3]]})

    # a payload that cannot be stored fails the whole batch: no metric row lands without its artifact
    with pytest.raises(TypeError):
        store.append_metrics(run_id, [(20, 2.0, 1.0, "val_loss", 0.2)], {"step": 20},
                             artifacts=[(20, 2.0, 1.0, "confusion", {"matrix": object()})])
    assert [r[1] for r in store.metrics_since(run_id)] == [10] and len(store.artifacts(run_id)) == 1
    assert store.get_run(run_id)["step"] == 10
    assert not store.conn.in_transaction


def test_read_latest_and_incremental_then_deleted_with_the_run(tmp_path):
    store = Store(tmp_path / "runs", create=True)
    run_id, other = make_run(store), make_run(store)
    store.append_artifacts(run_id, [(step, step / 10, 0.0, key, {"step": step}) for step in (10, 20, 30)
                                    for key in ("boundary", "confusion")])
    store.append_artifacts(other, [(5, 0.5, 0.0, "boundary", {"step": 5})])
    assert store.latest_artifact(run_id, "boundary")["payload"] == {"step": 30}
    assert store.latest_artifact(run_id, "missing") is None
    first = store.artifacts(run_id, "boundary")
    assert [a["step"] for a in first] == [10, 20, 30]
    assert [a["step"] for a in store.artifacts(run_id, "boundary", after_id=first[1]["id"])] == [30]

    store.delete_metrics_after(run_id, 20)  # a resume from the step-20 checkpoint
    assert [a["step"] for a in store.artifacts(run_id)] == [10, 10, 20, 20]
    store.delete_runs([run_id])
    assert store.artifacts(run_id) == [] and len(store.artifacts(other)) == 1
