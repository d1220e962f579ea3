"""Runs on a real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster: one GCS, two raylets, each
with its own worker processes), driven through the CLI as a user would. No mocks.

Each node has 1 CPU, so a sweep of several runs lands on both nodes (each run asks for 1 CPU = its OpenMP threads).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import PROJECT, cli
from experiments.store import Store
from sweeps import SweepHelpers, train_loss_steps

if os.environ.get("CI"):
    import ray  # noqa: F401  CI installs the cluster extra: a missing Ray must fail there, not skip
else:
    ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

SWEEPS = SweepHelpers()
experiment, start_detached, wait_for = SWEEPS.experiment, SWEEPS.start_detached, SWEEPS.wait_for


def raylet_pids(cluster) -> list[int]:
    return [p.process.pid for node in cluster.list_all_nodes()
            for p in node.all_processes.get("raylet", [])]


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, 1 CPU each, on this machine, with ports Ray picks (nobody else uses Ray here)."""
    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    pids = raylet_pids(c)
    yield c
    c.shutdown()
    # no raylet left behind
    import psutil

    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def node_ids(cluster) -> dict[str, str]:
    return {n.node_id[:8]: ("head" if n is cluster.head_node else "worker") for n in cluster.list_all_nodes()}


def run_node(run: dict) -> str:
    return run["node"].split()[-1]  # "IP NODEID8"


def test_sweep_on_two_nodes_matches_the_local_engine(tmp_path, cluster):
    path = experiment(tmp_path, "same", epochs=6, grid='"optimizer.lr" = [0.02, 0.05, 0.1, 0.2]')
    local = cli("run", path, "--parallel", "2", "--runs-dir", tmp_path / "local")  # 1 OpenMP thread each
    assert local.returncode == 0, local.stderr

    runs_dir = tmp_path / "ray"
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(path), "--cluster", "ray",
                           "--address", cluster.address, "--runs-dir", str(runs_dir)], cwd=PROJECT,
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()) and "completed" in proc.stdout

    local_store, ray_store = Store(tmp_path / "local"), Store(runs_dir)
    local_runs, ray_runs = local_store.list_runs(), ray_store.list_runs()
    assert [r["status"] for r in ray_runs] == ["completed"] * 4
    assert [r["train_loss"] for r in ray_runs] == [r["train_loss"] for r in local_runs]  # the same, exactly
    for mine, theirs in zip(ray_runs, local_runs):  # every logged loss and accuracy, step by step
        assert metric_values(ray_store, mine["id"]) == metric_values(local_store, theirs["id"])
    # both nodes trained, and the head holds every run's log and checkpoint
    nodes = node_ids(cluster)
    assert {nodes[run_node(r)] for r in ray_runs} == {"head", "worker"}
    for run in ray_runs:
        log = ray_store.log_path(run["id"]).read_text()
        assert "OpenMP threads 1 (planned 1)" in log and f"completed at step {run['total_steps']}" in log
        state = json.loads((ray_store.run_dir(run["id"]) / "checkpoint.json").read_text())
        assert state["step"] == run["total_steps"] and (ray_store.run_dir(run["id"]) / state["params"]).exists()
        assert run["cluster"] == f"ray:{cluster.address}"


def metric_values(store, run_id) -> list[tuple]:
    """(step, key, value) of the loss and accuracy rows (wall times differ between engines, values must not)."""
    return [(r[1], r[4], r[5]) for r in store.metrics_since(run_id, keys=["train_loss", "val_acc"])]


def test_stop_a_running_and_a_queued_cluster_run(tmp_path, cluster):
    runs_dir = tmp_path / "runs"
    # 3 runs on 2 CPUs: two train, the third waits in Ray's queue
    path = experiment(tmp_path, "stop", epochs=400, batch_size=16, grid='"optimizer.lr" = [0.01, 0.02, 0.03]')
    first, second, third = start_detached(path, runs_dir, "--cluster", "ray", "--address", cluster.address)["runs"]
    store = Store(runs_dir)
    wait_for(lambda: all((store.get_run(r)["step"] or 0) > 20 for r in (first, second)), 120)
    assert store.get_run(third)["status"] == "queued"

    # the dashboard's poller on the head sees the metrics of the runs training on the nodes, live
    from tui.poller import Poller

    poller, status, live = Poller(runs_dir), {}, set()
    poller.set_wanted([first, second])  # the runs a view plots: the poller reads their history, then new rows

    def poll_live():
        result = poller.poll()
        status.update({row["id"]: row["status"] for row in result.run_rows})
        live.update(run_id for run_id, _key in result.batch.groups if status.get(run_id) == "running")
        return {first, second} <= live
    wait_for(poll_live, 60, period=0.1)
    assert status[first] == status[second] == "running"

    stopped = cli("stop", third, "--runs-dir", runs_dir)
    assert stopped.returncode == 0 and f"{third}: stopped" in stopped.stdout
    stopped = cli("stop", first, "--runs-dir", runs_dir, "--timeout", "60")
    assert stopped.returncode == 0 and f"{first}: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    run = store.get_run(first)
    assert run["status"] == "stopped" and run["error"] is None and 0 < run["step"] < run["total_steps"]
    state = json.loads((store.run_dir(first) / "checkpoint.json").read_text())
    # the stop's checkpoint reached the head (the row's step is the last log line's, a few steps before)
    assert f"stopped at step {state['step']}" in store.log_path(first).read_text()
    assert 0 <= state["step"] - run["step"] < 5
    assert cli("stop", second, "--runs-dir", runs_dir).returncode == 0
    # the queued run never trained: its task saw `stopped` and skipped
    wait_for(lambda: "all runs ended" in "".join(p.read_text() for p in (runs_dir / "_scheduler").glob("*.log")),
             60)
    third_run = store.get_run(third)
    assert third_run["status"] == "stopped" and third_run["started"] is None and third_run["step"] == 0
    assert store.metrics_since(third) == []


def test_killing_a_node_marks_its_run_lost_and_resume_finishes_it_on_another_node(tmp_path, cluster):
    victim = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    runs_dir = tmp_path / "runs"
    # one run per node (3 nodes, 1 CPU each)
    path = experiment(tmp_path, "kill", epochs=200, batch_size=32, grid='"optimizer.lr" = [0.01, 0.02, 0.03]')
    run_ids = start_detached(path, runs_dir, "--cluster", "ray", "--address", cluster.address)["runs"]
    store = Store(runs_dir)

    def on_victim():
        for run_id in run_ids:
            run = store.get_run(run_id)
            # a checkpoint of the victim's run has been shipped to the head (epoch checkpoints are at most every 2 s,
            # so wait on the file, not on an epoch count)
            if run["status"] == "running" and run["node"] and run_node(run) == victim.node_id[:8] \
                    and run["checkpoint_step"] \
                    and (store.run_dir(run_id) / "checkpoint.json").exists():
                return run_id
    victim_run = wait_for(on_victim, 120)  # (200 epochs: a run lasts several checkpoint intervals of 2 s)
    cluster.remove_node(victim, allow_graceful=False)  # kill the node: raylet and its workers

    lost = wait_for(lambda: (r := store.get_run(victim_run))["status"] == "lost" and r, 60)
    assert "NodeDiedError" in lost["error"] and victim.node_id in lost["error"], lost["error"]
    others = [r for r in run_ids if r != victim_run]
    wait_for(lambda: all(store.get_run(r)["status"] == "completed" for r in others), 180)
    shown = cli("ls", "--json", "--runs-dir", runs_dir)
    assert {r["id"]: r["status"] for r in json.loads(shown.stdout)}[victim_run] == "lost"

    resumed = cli("resume", victim_run, "--wait", "--runs-dir", runs_dir, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = store.get_run(victim_run)
    assert run["status"] == "completed" and run["step"] == run["total_steps"]
    assert run_node(run) != victim.node_id[:8] and run_node(run) in node_ids(cluster)
    log = store.log_path(victim_run).read_text()
    resumed_at = int(log.split(f"resuming {victim_run} at step ")[1].split(":")[0])
    assert resumed_at > 0 and f"checkpoint of step {resumed_at} fetched from the head" in log
    steps = train_loss_steps(store, victim_run)
    assert steps == sorted(set(steps)) and steps[-1] == run["total_steps"]  # no step twice, none missing at the end


def test_a_run_no_node_can_hold_is_refused_before_anything_is_created(tmp_path, cluster):
    path = experiment(tmp_path, "big")
    result = cli("run", path, "--set", "train.threads=4", "--cluster", "ray", "--address", cluster.address,
                 "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2
    line = result.stderr.strip()  # refused by validation, against the cluster's largest node (1 CPU here)
    assert "\n" not in line and "train.threads" in line and "from 1 to 1 (the cores of the Ray cluster's largest node)" \
        in line and "got 4" in line, line
    assert not (tmp_path / "runs").exists()


def test_no_cluster_at_the_address_is_one_line_and_exit_2(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("run", experiment(tmp_path, "nowhere"), "--cluster", "ray", "--address", f"127.0.0.1:{port}",
                 "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no Ray cluster answers at" in result.stderr and not (tmp_path / "runs").exists()


def test_without_ray_cluster_ray_is_one_clear_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # what an environment without the extra looks like to import
            "from experiments.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "run", str(experiment(tmp_path, "noray")), "--cluster", "ray",
                             "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=PROJECT,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'mxdash run: --cluster ray needs Ray, which is not installed here: pip install -e ".[cpu,cluster]"  '
        '(on every node; or: pip install "ray==2.60.0")']
    assert not (tmp_path / "runs").exists()


def test_each_run_gets_its_planned_openmp_threads_in_reused_workers(tmp_path):
    """`--address local`: a private Ray instance with this machine's cores. Ray reuses worker processes, and MXNet
    reads OMP_NUM_THREADS only at import: each run must still train with the thread count planned for it
    (measured inside the worker with libgomp's omp_get_max_threads)."""
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "threads", epochs=1, grid='"train.threads" = [1, 2]\n"train.seed" = [1, 2]')
    result = cli("run", path, "--cluster", "ray", "--address", "local", "--runs-dir", runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store(runs_dir)
    seen = []
    for run in store.list_runs():
        planned = run["config"]["train"]["threads"]
        log = store.log_path(run["id"]).read_text()
        assert f"OpenMP threads {planned} (planned {planned})" in log, log[:300]
        seen.append(planned)
        assert run["status"] == "completed" and run["cluster"] == "ray:local"
    assert seen == [1, 1, 2, 2]


def test_resume_of_a_cluster_run_whose_cluster_is_gone_changes_nothing(runs_dir):
    import socket

    from conftest import create_runs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [8]},
           "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1}}
    store, (run_id,) = create_runs(runs_dir, raw)
    store.update_run(run_id, cluster=f"ray:127.0.0.1:{port}")
    store.finish_run(run_id, "lost", error="lost on node x: NodeDiedError")
    result = cli("resume", run_id, "--runs-dir", runs_dir)
    assert result.returncode == 2 and "no Ray cluster answers" in result.stderr
    assert store.get_run(run_id)["status"] == "lost"  # not requeued: nothing would ever start it
