"""Workers yield the CPU to interactive programs: the scheduler and every worker run at `--nice` (default
experiments.lifecycle.WORKER_NICENESS), read back from the kernel while the runs train."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import cli
from experiments.lifecycle import WORKER_NICENESS
from experiments.store import Store

LONG = """
[experiment]
name = "nice"
[data]
name = "digits"
[net]
name = "mlp"
hidden = [16]
[optimizer]
name = "sgd"
lr = 0.05
[train]
epochs = 400
"""


def niceness_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def running_worker(runs_dir, experiment: str, timeout: float = 300.0) -> dict:
    """The run once its worker trains (it has a PID and a step), waited on through the store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = Store(runs_dir)
        try:
            (run,) = store.list_runs(experiment=experiment)
            scheduler = store.conn.execute("SELECT pid FROM schedulers WHERE id = ?",
                                           (run["scheduler_id"],)).fetchone()
        finally:
            store.close()
        if run["status"] == "running" and run.get("pid") and run.get("step"):
            return {**run, "scheduler_pid": scheduler[0]}
        assert run["status"] in ("queued", "running"), run
        time.sleep(0.1)
    raise AssertionError(f"no worker trained within {timeout} s")


@pytest.mark.parametrize("extra, expected", [((), WORKER_NICENESS), (("--nice", "0"), 0), (("--nice", "12"), 12)])
def test_workers_run_at_the_requested_niceness(tmp_path, extra, expected):
    own = niceness_of(0)
    file = tmp_path / "nice.toml"
    file.write_text(LONG)
    started = cli("run", file, "--detach", "--json", *extra, "--runs-dir", tmp_path / "runs")
    assert started.returncode == 0, started.stderr
    experiment = json.loads(started.stdout.splitlines()[-1])["experiment"]
    try:
        run = running_worker(tmp_path / "runs", experiment)
        assert niceness_of(run["pid"]) == max(expected, own)  # never raised above the launcher's own
        assert niceness_of(run["scheduler_pid"]) == max(expected, own)
    finally:
        stopped = cli("stop", experiment, "--runs-dir", tmp_path / "runs")
    assert stopped.returncode == 0, stopped.stderr


def test_resume_uses_the_niceness_it_is_given(tmp_path):
    file = tmp_path / "nice.toml"
    file.write_text(LONG)
    started = cli("run", file, "--detach", "--json", "--nice", "0", "--runs-dir", tmp_path / "runs")
    experiment = json.loads(started.stdout.splitlines()[-1])["experiment"]
    running_worker(tmp_path / "runs", experiment)
    assert cli("stop", experiment, "--runs-dir", tmp_path / "runs").returncode == 0
    resumed = cli("resume", experiment, "--nice", "9", "--runs-dir", tmp_path / "runs")
    assert resumed.returncode == 0, resumed.stderr
    try:
        run = running_worker(tmp_path / "runs", experiment)
        assert niceness_of(run["pid"]) == max(9, niceness_of(0))
    finally:
        assert cli("stop", experiment, "--runs-dir", tmp_path / "runs").returncode == 0
