"""The scheduler can never strand or double-train a run (issue 8), with real processes and the real console script.

Order is asserted through the program's own records (store rows, the scheduler's log, pause-point files), never
through wall-clock comparisons or sleeps.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import PROJECT, cli
from experiments.store import Store
from sweeps import SweepHelpers, train_loss_steps

SWEEPS = SweepHelpers(probe_every=50, poll_period=0.1, cli_timeout=120)
experiment, ls, start_detached, wait_for = SWEEPS.experiment, SWEEPS.ls, SWEEPS.start_detached, SWEEPS.wait_for
all_ended, detached_run_past = SWEEPS.all_ended, SWEEPS.detached_run_past


def scheduler_pid(store: Store, run_id: str) -> int:
    scheduler = wait_for(lambda: (lambda s: s if s and s["pid"] else None)(
        store.get_scheduler(store.get_run(run_id)["scheduler_id"])), 30, what="scheduler pid")
    return scheduler["pid"]


# -- a dead scheduler ------------------------------------------------------------------------------------------------
def test_kill_9_of_the_scheduler_marks_its_queue_lost_the_foreground_run_says_so_and_resume_finishes(tmp_path):
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "orphans", epochs=40, batch_size=16, grid='"optimizer.lr" = [0.01, 0.02, 0.05]')
    foreground = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(path), "--parallel", "1",
                                   "--runs-dir", str(runs_dir)], cwd=PROJECT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    store = wait_for(lambda: (runs_dir / "mxdash.db").exists() and Store(runs_dir), 60, what="store")
    first = wait_for(lambda: [r for r in store.list_runs() if r["status"] == "running"], 60, what="a running run")[0]
    os.kill(scheduler_pid(store, first["id"]), signal.SIGKILL)

    out, err = foreground.communicate(timeout=240)
    assert foreground.returncode == 1, out + err
    assert "the scheduler was killed by SIGKILL" in err and "orphans-1.2" in err and "mxdash resume orphans-1" in err, err
    runs = {r["id"]: r for r in ls(runs_dir)}
    assert runs["orphans-1.1"]["status"] == "completed"  # its worker had its own process: it finished
    for run_id in ("orphans-1.2", "orphans-1.3"):
        assert runs[run_id]["status"] == "lost" and "scheduler" in runs[run_id]["error"], runs[run_id]

    result = cli("resume", "orphans-1", "--wait", "--runs-dir", runs_dir, timeout=300)
    assert "orphans-1.2" in result.stdout and "orphans-1.3" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0 and "not resumed: orphans-1.1: completed: nothing to resume" in result.stdout
    assert {r["status"] for r in ls(runs_dir)} == {"completed"}
    for run_id in ("orphans-1.2", "orphans-1.3"):
        steps = train_loss_steps(store, run_id)
        assert steps == sorted(set(steps)) and steps[-1] == store.get_run(run_id)["total_steps"]


# -- one owner per run -----------------------------------------------------------------------------------------------
def test_two_concurrent_resumes_exactly_one_trains_and_no_step_is_recorded_twice(tmp_path):
    runs_dir, store, run_id = detached_run_past(tmp_path, "twice", epochs=100, step=100, timeout=120,
                                                what="some steps")
    stop = cli("stop", run_id, "--runs-dir", runs_dir)
    assert f"{run_id}: stopped" in stop.stdout, stop.stdout + stop.stderr

    resumes = [subprocess.Popen([sys.executable, "-m", "experiments.cli", "resume", run_id, "--runs-dir",
                                 str(runs_dir)], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in resumes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert "another command resumed it first" in loser or "already queued" in loser or "running" in loser, loser

    wait_for(lambda: store.get_run(run_id)["status"] == "completed", 240, what="completion")
    steps = train_loss_steps(store, run_id)
    assert steps == sorted(set(steps)), "a step was recorded twice"
    assert steps[-1] == store.get_run(run_id)["total_steps"]
    claims = [line for line in store.log_path(run_id).read_text().splitlines() if line.startswith("resuming")]
    assert len(claims) == 1, claims  # exactly one worker trained after the stop


def test_a_worker_that_lost_its_run_cannot_write_to_it(tmp_path):
    """The store side of ownership: a lease that no longer owns the run is refused for every write."""
    from conftest import create_runs
    from experiments.store import ClaimRefused, NotOwner

    store, (run_id,) = create_runs(tmp_path / "runs", {"train": {"epochs": 1}})
    lease = store.claim_run(run_id, os.getpid())
    with pytest.raises(ClaimRefused, match="running, not queued"):
        store.claim_run(run_id, os.getpid())  # a second claimer
    store.finish_run(run_id, "stopped", lease)
    assert store.requeue(run_id) and not store.requeue(run_id)  # the second resume loses the compare-and-set
    newer = store.claim_run(run_id, os.getpid())
    for write in (lambda: store.append_metrics(run_id, [(1, 0.1, 0.0, "train_loss", 1.0)], lease=lease),
                  lambda: store.finish_run(run_id, "completed", lease),
                  lambda: store.heartbeat(run_id, lease)):
        with pytest.raises(NotOwner):
            write()
    store.append_metrics(run_id, [(1, 0.1, 0.0, "train_loss", 1.0)], lease=newer)
    assert len(store.metrics_since(run_id)) == 1


# -- stop always wins ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["queued", "before-claim", "after-claim", "before-train"])
def test_stop_at_every_point_of_a_runs_start_ends_stopped(tmp_path, point):
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "stopstart", epochs=30, batch_size=16, grid='"optimizer.lr" = [0.01, 0.02]')
    env = dict(os.environ)
    target = "stopstart-1.2"
    if point != "queued":
        env["MXDASH_TEST_PAUSE"] = f"{point}:{target}"
    # parallel 1: run 2 waits in the queue until run 1 ends
    started = start_detached(path, runs_dir, "--parallel", "1", env=env)
    store = Store(runs_dir)
    if point == "queued":
        wait_for(lambda: store.get_run("stopstart-1.1")["status"] == "running", 60, what="run 1 running")
        assert store.get_run(target)["status"] == "queued"
    else:
        cli("stop", "stopstart-1.1", "--runs-dir", runs_dir)  # let run 2 start soon
        marker = store.run_dir(target) / f"paused-{point}"
        wait_for(marker.exists, 120, what=f"run 2 paused at {point}")
    result = cli("stop", target, "--runs-dir", runs_dir, "--timeout", "0")
    assert result.returncode == 0, result.stderr
    if point == "queued":
        cli("stop", "stopstart-1.1", "--runs-dir", runs_dir)
    else:
        marker.unlink()
    wait_for(lambda: all_ended(runs_dir), 120, what="both runs ended")
    run = store.get_run(target)
    assert run["status"] == "stopped", (point, run["status"], run["error"])
    assert (run["step"] or 0) == 0 and not train_loss_steps(store, target)  # it never trained


# -- exact resume after kill -9 --------------------------------------------------------------------------------------
def test_kill_9_at_a_random_step_then_resume_equals_uninterrupted(tmp_path):
    mx = pytest.importorskip("mxnet")
    import numpy as np

    from experiments.checkpoint import checkpoint_files

    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "exact", epochs=40, batch_size=8,
                      grid='"experiment.description" = ["uninterrupted", "killed"]')
    straight_id, killed_id = start_detached(path, runs_dir, "--parallel", "2")["runs"]
    store = Store(runs_dir)
    total = wait_for(lambda: store.get_run(killed_id)["total_steps"], 60, what="total steps")
    kill_after = random.Random().randint(total // 10, total * 2 // 3)
    wait_for(lambda: (store.get_run(killed_id)["step"] or 0) >= kill_after, 240, 0.02, what=f"step {kill_after}")
    run = store.get_run(killed_id)
    os.kill(run["pid"], signal.SIGKILL)
    wait_for(lambda: store.reap_lost() or store.get_run(killed_id)["status"] == "lost", 30, what="lost")
    assert store.get_run(killed_id)["threads"] == store.get_run(straight_id)["threads"] == 1

    result = cli("resume", killed_id, "--wait", "--runs-dir", runs_dir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: store.get_run(straight_id)["status"] == "completed", 240, what="the uninterrupted run")

    def rows(run_id):  # wall times and throughput are measurements, everything else must match exactly
        return [(step, epoch, key, value) for _id, step, epoch, _wall, key, value in store.metrics_since(run_id)
                if key != "samples_per_s"]

    assert rows(killed_id) == rows(straight_id), f"killed near step {kill_after}"
    a = mx.nd.load(str(checkpoint_files(store.run_dir(straight_id))[0]))
    b = mx.nd.load(str(checkpoint_files(store.run_dir(killed_id))[0]))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key].asnumpy(), b[key].asnumpy()), key


# -- liveness from progress ------------------------------------------------------------------------------------------
def test_a_sigstopped_worker_is_shown_stale_not_running_nor_lost(tmp_path):
    runs_dir, store, run_id = detached_run_past(tmp_path, "frozen", epochs=40, step=0, timeout=60,
                                                what="first steps")
    pid = store.get_run(run_id)["pid"]
    env = dict(os.environ, MXDASH_STALE_S="2")
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = wait_for(lambda: [r for r in ls(runs_dir, env=env) if r["stale"]], 60, 0.5, what="stale")
        assert frozen[0]["status"] == "running" and frozen[0]["last_progress_s"] >= 2
        assert frozen[0]["heartbeat"] is not None and frozen[0]["progress_at"] is not None
        table = subprocess.run([sys.executable, "-m", "experiments.cli", "ls", "--runs-dir", str(runs_dir)],
                               capture_output=True, text=True, cwd=PROJECT, env=env).stdout
        assert "stale" in table
        shown = subprocess.run([sys.executable, "-m", "experiments.cli", "show", run_id, "--runs-dir", str(runs_dir)],
                               capture_output=True, text=True, cwd=PROJECT, env=env).stdout
        assert "stale  no progress for" in shown, shown[:300]
        assert [r["id"] for r in ls(runs_dir, "--status", "stale", env=env)] == [run_id]
        time.sleep(6)  # > HEARTBEAT_STALE_S: a frozen worker's heartbeat is stale too, yet its process lives
        assert store.reap_lost() == [] and store.get_run(run_id)["status"] == "running"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: store.get_run(run_id)["status"] == "completed", 240, what="completion after SIGCONT")
    assert not [r for r in ls(runs_dir, env=env) if r["stale"]]


# -- crash isolation under warm workers ------------------------------------------------------------------------------
def test_a_crash_or_kill_of_warm_workers_leaves_the_rest_of_the_sweep_completing(tmp_path):
    """SIGSEGV and SIGABRT stand for crashes in native code, SIGKILL for the out-of-memory killer. (Before the
    worker reset SIGSEGV, MXNet's own handler called exit() inside the handler and the dying worker hung for ever,
    holding its slot: this test timed out.)"""
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "crash", epochs=60, batch_size=16,
                      grid='"optimizer.lr" = [0.01, 0.02, 0.03, 0.05, 0.1]')
    run_ids = start_detached(path, runs_dir, "--parallel", "3")["runs"]
    store = Store(runs_dir)
    victims = wait_for(lambda: (lambda rs: rs if len(rs) == 3 else None)(
        [r for r in store.list_runs() if r["status"] == "running" and (r["step"] or 0) > 0]), 60, 0.05,
        what="three training runs")
    signals = (signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL)
    for victim, sig in zip(victims, signals):
        os.kill(victim["pid"], sig)
    runs = {r["id"]: r for r in wait_for(lambda: all_ended(runs_dir), 300, 0.5, what="the sweep")}
    for victim, sig in zip(victims, signals):
        run = runs[victim["id"]]
        assert run["status"] == "lost" and f"killed by {sig.name}" in run["error"], run
    assert "Fatal Python error: Segmentation fault" in store.log_path(victims[0]["id"]).read_text()
    survivors = [r for r in run_ids if r not in {v["id"] for v in victims}]
    assert len(survivors) == 2 and all(runs[r]["status"] == "completed" for r in survivors)
    log = next((runs_dir / "_scheduler").glob("scheduler-*.log")).read_text()
    assert log.count("forked ") == 5 and log.count("imported the engine") == 1  # one import, five forks


def test_parallel_runs_overlap_by_the_schedulers_own_record(tmp_path):
    """With --parallel 2 the scheduler starts the second run before the first ends: its log says so, in order
    (no wall-clock comparison)."""
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "overlap", epochs=3, grid='"optimizer.lr" = [0.01, 0.02, 0.05, 0.1]')
    result = cli("run", path, "--parallel", "2", "--runs-dir", runs_dir)
    assert result.returncode == 0, result.stderr
    lines = next((runs_dir / "_scheduler").glob("scheduler-*.log")).read_text().splitlines()
    events = [line.split(" ", 1)[1] for line in lines]
    second_start = next(i for i, e in enumerate(events) if e.startswith("forked overlap-1.2"))
    first_end = next(i for i, e in enumerate(events) if e.startswith("overlap-1.1 ended"))
    assert second_start < first_end


def test_gpu_slots_are_assigned_one_per_run_and_reused_when_a_run_ends(tmp_path, monkeypatch):
    """The warm scheduler keeps the one-run-per-GPU-slot assignment (no GPU here: NVML's count is injected and the
    fork is recorded instead of made)."""
    from conftest import create_runs
    from experiments import lifecycle

    store, run_ids = create_runs(tmp_path / "runs", {"train": {"epochs": 1},
                                                     "grid": {"optimizer.lr": [0.1, 0.2, 0.3]}})
    scheduler_id = store.create_scheduler(threads=1, parallel=2)
    for run_id in run_ids:
        config = store.get_run(run_id)["config"]
        config["train"]["device"] = "gpu"
        store.update_run(run_id, config=config, scheduler_id=scheduler_id)
    monkeypatch.setattr(lifecycle, "visible_gpu_count", lambda: 2)
    forked = []
    monkeypatch.setattr(lifecycle, "fork_worker", lambda runs_dir, run_id, sid, generation, gpu_ids, log_path:
                        forked.append((run_id, list(gpu_ids))) or 1000 + len(forked))
    scheduler = lifecycle.Scheduler(store, scheduler_id, parallel=2, threads=1, warm=True, log=lambda line: None)
    scheduler.start_queued()
    assert forked == [(run_ids[0], [0]), (run_ids[1], [1])]
    scheduler.start_queued()
    assert len(forked) == 2  # both slots busy
    scheduler.child_ended(1001, 0)  # the first run's worker exits: its GPU is free again
    scheduler.start_queued()
    assert forked[2] == (run_ids[2], [0])


def test_each_run_trains_with_the_openmp_threads_it_was_planned_with(tmp_path):
    """Runs planned with the scheduler's thread count are forked from it; a run that asks for another count gets
    a fresh process with that count set before mxnet is imported (a fork would keep the parent's)."""
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, "threads", epochs=1, grid='"train.threads" = [1, 2]')
    result = cli("run", path, "--parallel", "2", "--runs-dir", runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store(runs_dir)
    assert [store.get_run(f"threads-1.{i}")["threads"] for i in (1, 2)] == [1, 2]
    log = next((runs_dir / "_scheduler").glob("scheduler-*.log")).read_text()
    assert "OMP_NUM_THREADS=1" in log and "forked threads-1.1" in log and "spawned (2 threads) threads-1.2" in log
    for i, threads in ((1, 1), (2, 2)):
        started = next(line for line in store.log_path(f"threads-1.{i}").read_text().splitlines()
                       if line.startswith("starting"))
        assert started.endswith(f"{threads} threads"), started
