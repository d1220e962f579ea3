"""The head's side of cluster runs without Ray: the StoreWriter (a plain class Ray runs as an actor) against a real
store, and where `mxdash resume` sends runs."""
from __future__ import annotations

import json

import pytest

from conftest import create_runs
from experiments import cluster
from experiments.cluster import CHECKPOINT, StaleAttempt, StoreWriter

RAW = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [8]},
       "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1}}


@pytest.fixture
def writer(runs_dir):
    store, (run_id,) = create_runs(runs_dir, RAW)
    store.update_run(run_id, cluster="ray:local", cluster_task="attempt-2")
    return StoreWriter(str(runs_dir)), store, run_id


def test_checkpoint_name_is_the_training_loops():
    from experiments import checkpoint

    assert CHECKPOINT == checkpoint.CHECKPOINT


def test_a_superseded_attempt_writes_nothing(writer):
    w, store, run_id = writer
    with pytest.raises(StaleAttempt, match="attempt-1 no longer owns"):
        w.call(run_id, "attempt-1", "append_metrics", (run_id, [(1, 0.1, 0.0, "train_loss", 9.0)]),
               {"latest": {"train_loss": 9.0}}, ["a late line\n"],
               {CHECKPOINT: b'{"step": 1, "params": "step1.params", "states": "step1.states"}',
                "step1.params": b"p", "step1.states": b"s"})
    assert store.metrics_since(run_id) == [] and store.get_run(run_id)["train_loss"] is None
    assert not store.log_path(run_id).exists() and not (store.run_dir(run_id) / CHECKPOINT).exists()
    w.call(run_id, "attempt-2", "append_metrics", (run_id, [(1, 0.1, 0.0, "train_loss", 2.0)]), {}, [], None)
    assert [row[5] for row in store.metrics_since(run_id)] == [2.0]


def test_only_store_methods_are_forwarded(writer):
    w, _store, run_id = writer
    for name in ("conn", "_init_schema", "no_such_method"):
        with pytest.raises(AttributeError):
            w.call(run_id, "attempt-2", name, (), {}, [], None)


def test_checkpoints_commit_on_the_head_like_on_the_node(writer):
    w, store, run_id = writer
    run_dir = store.run_dir(run_id)

    def files(step):
        meta = json.dumps({"step": step, "params": f"step{step}.params", "states": f"step{step}.states"}).encode()
        return {CHECKPOINT: meta, f"step{step}.params": b"P%d" % step, f"step{step}.states": b"S%d" % step}

    w.call(run_id, "attempt-2", "heartbeat", (run_id,), {}, ["line one", "line two\n"], files(10))
    w.call(run_id, "attempt-2", "heartbeat", (run_id,), {}, [], files(20))
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(("step", "check"))) == \
        [CHECKPOINT, "step20.params", "step20.states"]  # the older checkpoint's files went after the commit
    assert store.log_path(run_id).read_text() == "line one\nline two\n"
    fetched = w.fetch_checkpoint(run_id, "attempt-2")
    assert fetched == files(20)
    with pytest.raises(StaleAttempt):
        w.fetch_checkpoint(run_id, "attempt-1")


def test_a_claim_records_the_nodes_pid_start_time(writer):
    """claim_run measures the PID's start on the head, where that PID is another process (or none)."""
    w, store, run_id = writer
    w.call(run_id, "attempt-2", "claim_run", (run_id, 424242, "node-b"), {}, [], None,
           {"pid_started": 1234.5, "host": "node-b"})
    run = store.get_run(run_id)
    assert (run["status"], run["pid"], run["pid_started"], run["host"]) == ("running", 424242, 1234.5, "node-b")


def test_resume_goes_back_where_each_run_ran():
    runs = [{"id": "a", "cluster": None}, {"id": "b", "cluster": "ray:local"}, {"id": "c", "cluster": None}]
    assert cluster.plan_resume(runs, None, None) == {None: ["a", "c"], "local": ["b"]}
    assert cluster.plan_resume(runs, "local", None) == {None: ["a", "b", "c"]}
    assert cluster.plan_resume(runs, "ray", "local") == {"local": ["a", "b", "c"]}


def test_ray_reason_keeps_rays_words_without_the_advice():
    class NodeDiedError(Exception):
        pass

    error = NodeDiedError("Task failed because the node it was running on is dead or unavailable. Node IP: "
                          "10.0.0.2, node ID: 6f3c. This can happen if the node was preempted, had a hardware "
                          "failure, or its raylet crashed unexpectedly. To see node death information, use ...")
    assert cluster.ray_reason(error) == ("NodeDiedError: Task failed because the node it was running on is dead or "
                                         "unavailable. Node IP: 10.0.0.2, node ID: 6f3c.")


def test_resources_a_run_asks_for():
    cpu_cluster = {"nodes": 2, "cpus": 4, "gpus": 0, "node_cpus": 2, "node_gpus": 0, "min_node_cpus": 2}
    gpu_cluster = {**cpu_cluster, "gpus": 4, "node_gpus": 2}
    assert cluster.plan_threads(28, cpu_cluster) == 1 and cluster.plan_threads(2, cpu_cluster) == 2
    cfg = lambda device: {"train": {"device": device}}  # noqa: E731
    assert cluster.run_request(cfg("cpu"), 2, 1, cpu_cluster) == {"num_cpus": 2, "num_gpus": 0, "gpu_ids": None}
    assert cluster.run_request(cfg("auto"), 1, 1, cpu_cluster)["num_gpus"] == 0
    assert cluster.run_request(cfg("auto"), 1, 2, gpu_cluster) == {"num_cpus": 1, "num_gpus": 0.5, "gpu_ids": [0]}
    # gpu:2,3 on a node = two GPUs, whichever Ray assigns; inside the task CUDA numbers them 0 and 1
    assert cluster.run_request(cfg("gpu:2,3"), 1, 1, gpu_cluster) == {"num_cpus": 1, "num_gpus": 2, "gpu_ids": [0, 1]}
    assert "largest node has 2" in cluster.infeasible({"num_cpus": 3, "num_gpus": 0}, cpu_cluster)
    assert "at most 2" in cluster.infeasible({"num_cpus": 1, "num_gpus": 3}, gpu_cluster)


def test_ray_reason_of_a_task_error_is_its_cause():
    class ActorDiedError(Exception):
        pass

    class RayTaskError(Exception):
        def __init__(self, cause):
            super().__init__("\x1b[36mray::mxdash t-1.1()\x1b[39m (pid=1) File ... traceback")
            self.cause = cause

    error = RayTaskError(ActorDiedError("The actor died unexpectedly before finishing this task.\n\tclass_name: "
                                        "StoreWriter"))
    assert cluster.ray_reason(error) == ("ActorDiedError: The actor died unexpectedly before finishing this task. "
                                         "class_name: StoreWriter")
