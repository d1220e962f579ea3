"""Store faults survived with a clear word (issue 9): disk full, a damaged or missing checkpoint, a deleted WAL,
ids never reused after `mxdash gc`, a failed commit reported as what it was."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import PROJECT, cli, create_runs
from experiments.store import Store, StoreWriteError
from sweeps import train_loss_steps
from test_scheduler import all_ended, detached_run_past, experiment, ls, start_detached, wait_for


def run_to_end(runs_dir, raw, name="t"):
    pytest.importorskip("mxnet")
    from experiments.train import execute

    store, run_ids = create_runs(runs_dir, raw, name)
    for run_id in run_ids:
        assert execute(store, run_id, log=lambda line: None) == "completed"
    return store, run_ids


SMALL = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [16]},
         "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 2, "batch_size": 64, "log_every": 5}}


# -- a failed commit is reported as what it was ----------------------------------------------------------------------
def test_a_failed_commit_raises_the_real_error_not_cannot_rollback(tmp_path, monkeypatch):
    store = Store(tmp_path / "runs", create=True)
    real_connection = store.conn

    class FullOnCommit:
        """A connection whose COMMIT fails as SQLite does on a full disk (it has already rolled back)."""

        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql, *args):
            if sql == "COMMIT":
                self._conn.execute("ROLLBACK")
                raise sqlite3.OperationalError("database or disk is full")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._conn, name)

    store.conn = FullOnCommit(real_connection)
    with pytest.raises(StoreWriteError) as error:
        store.create_scheduler(1, 1)
    assert error.value.disk_full and "disk full" in str(error.value) and "cannot rollback" not in str(error.value)
    assert not real_connection.in_transaction
    store.conn = real_connection
    assert store.create_scheduler(1, 1) >= 1  # the connection is usable again


# -- ids are never reused --------------------------------------------------------------------------------------------
def test_metric_and_experiment_ids_are_never_reused_after_gc(tmp_path):
    runs_dir = tmp_path / "runs"
    store, _ = create_runs(runs_dir, {"train": {"epochs": 1}}, "exp")
    for _ in range(2):
        create_runs(runs_dir, {"train": {"epochs": 1}}, "exp")
    runs = store.list_runs()
    newest = runs[-1]["id"]
    assert newest == "exp-3.1"
    for run in runs:
        store.append_metrics(run["id"], [(s, 0.0, 0.0, "train_loss", 1.0) for s in range(100)])
        store.finish_run(run["id"], "completed")
    poller_last_id = store.conn.execute("SELECT MAX(id) FROM metrics").fetchone()[0]  # what a reader has seen
    result = cli("gc", newest, "--yes", "--runs-dir", runs_dir)
    assert result.returncode == 0, result.stderr
    _, (new_run,) = create_runs(runs_dir, {"train": {"epochs": 1}}, "exp")
    assert new_run == "exp-4.1"  # not exp-3.1 again
    store.append_metrics(new_run, [(s, 0.0, 0.0, "train_loss", 2.0) for s in range(100)])
    seen = store.metrics_since_all(poller_last_id)  # the dashboard's incremental read
    assert len(seen) == 100 and {row[1] for row in seen} == {new_run}


def test_a_schema_1_store_is_migrated_keeping_its_rows(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    conn = sqlite3.connect(runs_dir / "mxdash.db")
    conn.executescript("""
        PRAGMA journal_mode = WAL;
        CREATE TABLE experiments (id TEXT PRIMARY KEY, name TEXT NOT NULL, file TEXT, created REAL NOT NULL,
            config TEXT NOT NULL, grid TEXT NOT NULL, parallel INTEGER, per_gpu INTEGER DEFAULT 1);
        CREATE TABLE runs (id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, idx INTEGER NOT NULL,
            status TEXT NOT NULL, config TEXT NOT NULL, created REAL, step INTEGER DEFAULT 0);
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step INTEGER NOT NULL,
            epoch REAL NOT NULL, wall REAL NOT NULL, key TEXT NOT NULL, value REAL);
        INSERT INTO experiments VALUES ('old-7', 'old', NULL, 0, '{}', '{}', 1, 1);
        INSERT INTO runs (id, experiment_id, idx, status, config, created) VALUES ('old-7.1', 'old-7', 1,
            'completed', '{}', 0);
        INSERT INTO metrics VALUES (41, 'old-7.1', 1, 0.1, 0.0, 'train_loss', 0.5);
        PRAGMA user_version = 1;
    """)
    conn.close()
    store = Store(runs_dir)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert [tuple(r) for r in store.metrics_since("old-7.1")] == [(41, 1, 0.1, 0.0, "train_loss", 0.5)]
    assert "AUTOINCREMENT" in store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'metrics'").fetchone()[0]
    store.append_metrics("old-7.1", [(2, 0.2, 0.0, "train_loss", 0.4)])
    assert store.metrics_since("old-7.1")[-1][0] == 42
    _, (run_id,) = create_runs(runs_dir, {"train": {"epochs": 1}}, "old")
    assert run_id == "old-8.1"
    assert store.get_run("old-7.1")["generation"] == 0  # the new columns exist with their defaults


# -- checkpoints -----------------------------------------------------------------------------------------------------
def stopped_midway(runs_dir):
    """A run stopped after some steps, with a committed checkpoint."""
    pytest.importorskip("mxnet")
    from experiments.stop import StopSignal
    from experiments.train import Run, execute

    store, (run_id,) = create_runs(runs_dir, {**SMALL, "train": {**SMALL["train"], "epochs": 4}})
    stop = StopSignal()
    original = Run.train_step

    def stepping(self, *args):
        out = original(self, *args)
        if self.step >= 30:
            stop.requested = True
        return out

    Run.train_step = stepping
    try:
        assert execute(store, run_id, log=lambda line: None, stop=stop) == "stopped"
    finally:
        Run.train_step = original
    return store, run_id


def test_a_damaged_checkpoint_is_refused_naming_the_file_and_from_scratch_restarts(tmp_path):
    runs_dir = tmp_path / "runs"
    store, run_id = stopped_midway(runs_dir)
    state = json.loads((store.run_dir(run_id) / "checkpoint.json").read_text())
    params = store.run_dir(run_id) / state["params"]
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0x40  # one flipped bit
    params.write_bytes(bytes(data))
    rows_before = len(store.metrics_since(run_id))

    result = cli("resume", run_id, "--runs-dir", runs_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()
    assert len(line) == 1 and str(params) in line[0] and "damaged" in line[0] and "--from-scratch" in line[0]
    assert "Traceback" not in result.stderr
    assert store.get_run(run_id)["status"] == "stopped" and len(store.metrics_since(run_id)) == rows_before

    result = cli("resume", run_id, "--from-scratch", "--wait", "--runs-dir", runs_dir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["step"] == run["total_steps"]
    steps = train_loss_steps(store, run_id)
    assert steps == sorted(set(steps)) and steps[0] == 5  # recorded again from step 0, once


def test_a_deleted_checkpoint_json_is_refused_never_a_silent_restart(tmp_path):
    runs_dir = tmp_path / "runs"
    store, run_id = stopped_midway(runs_dir)
    (store.run_dir(run_id) / "checkpoint.json").unlink()
    rows = len(store.metrics_since(run_id))
    result = cli("resume", run_id, "--runs-dir", runs_dir)
    assert result.returncode == 2 and "checkpoint.json is missing" in result.stderr, result.stderr
    assert len(store.metrics_since(run_id)) == rows
    # the worker's own safety net refuses too (a resume that skipped the CLI check)
    from experiments.train import execute

    assert store.requeue(run_id)
    assert execute(store, run_id, log=lambda line: None) == "failed"
    run = store.get_run(run_id)
    assert "checkpoint.json is missing" in run["error"] and len(store.metrics_since(run_id)) == rows


def test_checkpoint_json_parse_errors_name_the_file(tmp_path):
    runs_dir = tmp_path / "runs"
    store, run_id = stopped_midway(runs_dir)
    (store.run_dir(run_id) / "checkpoint.json").write_text("{not json")
    result = cli("resume", run_id, "--runs-dir", runs_dir)
    assert result.returncode == 2 and f"{store.run_dir(run_id) / 'checkpoint.json'} is damaged" in result.stderr


# -- a deleted WAL ---------------------------------------------------------------------------------------------------
def test_a_wal_deleted_while_a_run_writes_loses_no_row(tmp_path):
    runs_dir, store, run_id = detached_run_past(tmp_path, "walgone", epochs=30, step=50, timeout=120,
                                                what="some steps")
    (runs_dir / "mxdash.db-wal").unlink()
    store.close()
    runs = wait_for(lambda: all_ended(runs_dir), 300, 0.5, what="the run's end")
    assert runs[0]["status"] == "completed", runs[0]
    fresh = Store(runs_dir)  # a reader that opened after the deletion
    run = fresh.get_run(run_id)
    steps = train_loss_steps(fresh, run_id)
    assert steps == list(range(5, run["total_steps"] + 1, 5)), "rows lost or duplicated"
    assert fresh.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "was deleted while this process was using it" in store.log_path(run_id).read_text()


def test_a_worker_started_on_a_store_without_its_run_fails_with_a_sentence(tmp_path):
    pytest.importorskip("mxnet")
    from experiments.train import Run

    store = Store(tmp_path / "runs", create=True)
    with pytest.raises(RuntimeError, match="run nope.1 is not in"):
        Run(store, "nope.1")


# -- disk full -------------------------------------------------------------------------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    # the filler exists before anything runs: creating it once the disk is already (nearly) full can itself fail
    # with ENOSPC (seen in CI), and appending to an existing file needs no new inode
    (mount / "filler").touch()
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path) -> Path:
    filler = path / "filler"
    before = subprocess.run(["du", "-ak", str(path)], capture_output=True, text=True).stdout
    with open(filler, "ab") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    # the test frees the disk by deleting the filler: it must be what filled it
    assert filler.stat().st_size > (8 << 20), f"the disk was already full before the filler:\n{before}"
    return filler


def wait_or_explain(predicate, timeout, runs_dir, what):
    try:
        return wait_for(predicate, timeout, 0.5, what=what)
    except AssertionError as timed_out:
        logs = "".join(p.read_text()[-3000:] for p in (runs_dir / "_scheduler").glob("*.log"))
        statuses = {r["id"]: (r["status"], r.get("step"), r.get("error")) for r in ls(runs_dir)}
        raise AssertionError(f"{timed_out}\nruns: {statuses}\nscheduler log tail:\n{logs}") from None


def test_disk_full_is_survived_and_resume_finishes_everything_after_space_is_freed(tmp_path, small_tmpfs):
    runs_dir = small_tmpfs / "runs"
    path = experiment(tmp_path, "full", epochs=150, batch_size=16, grid='"optimizer.lr" = [0.01, 0.02, 0.05]')
    first, second, third = start_detached(path, runs_dir, "--parallel", "1")["runs"]
    store = Store(runs_dir)
    wait_for(lambda: store.get_run(first)["checkpoint_step"], 120, what="a first checkpoint")
    filler = fill(small_tmpfs)
    # the worker cannot write its metrics, its end or its heartbeat: readers show it lost, saying why
    lost = wait_for(lambda: [r for r in ls(runs_dir) if r["id"] == first and r["status"] == "lost"], 120, 0.5,
                    what="the first run shown lost")[0]
    assert "disk full" in lost["error"], lost["error"]
    for command in (["ls"], ["show", first], ["compare", first, second]):
        result = cli(*command, "--runs-dir", runs_dir)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
    scheduler = store.get_scheduler(store.get_run(second)["scheduler_id"])
    from experiments.store import pid_alive

    assert pid_alive(scheduler["pid"], scheduler["pid_started"])  # it survived, keeping its queue
    assert {r["status"] for r in ls(runs_dir) if r["id"] != first} == {"queued"}
    leftovers = [p.name for p in store.run_dir(first).iterdir()
                 if p.name.endswith(".partial") or p.name.endswith(".tmp") or p.stat().st_size == 0]
    assert leftovers == []

    filler.unlink()
    wait_or_explain(lambda: all(r["status"] == "completed" for r in ls(runs_dir) if r["id"] != first), 600,
                    runs_dir, "the queue after space was freed")
    result = cli("resume", "full-1", "--wait", "--runs-dir", runs_dir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {r["status"] for r in ls(runs_dir)} == {"completed"}
    steps = train_loss_steps(store, first)
    assert steps == sorted(set(steps)) and steps[-1] == store.get_run(first)["total_steps"]
