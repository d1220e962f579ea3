"""Workers yield the CPU to interactive programs: the scheduler and every worker run at `--nice` (default
experiments.lifecycle.WORKER_NICENESS), read back from the kernel while the runs train."""
from __future__ import annotations

import os

import pytest

from conftest import cli
from experiments.lifecycle import WORKER_NICENESS
from experiments.store import Store
from sweeps import SweepHelpers

SWEEPS = SweepHelpers()
EPOCHS = 400  # long enough to be read while it trains; every test stops it


def niceness_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def training(runs_dir, experiment: str):
    """The run and its scheduler's PID once its worker trains (a PID and a step), through the store; else None."""
    store = Store(runs_dir)
    try:
        (run,) = store.list_runs(experiment=experiment)
        assert run["status"] in ("queued", "running"), run
        if run["status"] != "running" or not run.get("pid") or not run.get("step"):
            return None
        (scheduler_pid,) = store.conn.execute("SELECT pid FROM schedulers WHERE id = ?",
                                              (run["scheduler_id"],)).fetchone()
        return {**run, "scheduler_pid": scheduler_pid}
    finally:
        store.close()


def start(tmp_path, *extra) -> str:
    path = SWEEPS.experiment(tmp_path, "nice", epochs=EPOCHS, batch_size=16)
    experiment = SWEEPS.start_detached(path, tmp_path / "runs", *extra)["experiment"]
    SWEEPS.wait_for(lambda: training(tmp_path / "runs", experiment), 300, what="a worker training")
    return experiment


def stop(tmp_path, experiment: str) -> None:
    stopped = cli("stop", experiment, "--runs-dir", tmp_path / "runs")
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize("extra, expected", [((), WORKER_NICENESS), (("--nice", "0"), 0), (("--nice", "12"), 12)])
def test_workers_run_at_the_requested_niceness(tmp_path, extra, expected):
    own = niceness_of(0)
    experiment = start(tmp_path, *extra)
    try:
        run = training(tmp_path / "runs", experiment)
        assert niceness_of(run["pid"]) == max(expected, own)  # never raised above the launcher's own
        assert niceness_of(run["scheduler_pid"]) == max(expected, own)
    finally:
        stop(tmp_path, experiment)


def test_resume_uses_the_niceness_it_is_given(tmp_path):
    experiment = start(tmp_path, "--nice", "0")
    stop(tmp_path, experiment)
    resumed = cli("resume", experiment, "--nice", "9", "--runs-dir", tmp_path / "runs")
    assert resumed.returncode == 0, resumed.stderr
    try:
        run = SWEEPS.wait_for(lambda: training(tmp_path / "runs", experiment), 300, what="the resumed worker")
        assert niceness_of(run["pid"]) == max(9, niceness_of(0))
    finally:
        stop(tmp_path, experiment)
