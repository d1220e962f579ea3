"""Run lifecycle with real worker processes: parallel sweeps, kill -9, detach, stop/resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import PROJECT, cli, create_runs
from experiments.store import Store
from sweeps import SweepHelpers, train_loss_steps

SWEEPS = SweepHelpers()
experiment, ls, start_detached, wait_for = SWEEPS.experiment, SWEEPS.ls, SWEEPS.start_detached, SWEEPS.wait_for


class PollingReader(threading.Thread):
    """A reader polling the store incrementally while workers write, as the dashboard does."""

    def __init__(self, runs_dir):
        super().__init__(daemon=True)
        self.runs_dir, self.errors, self.rows, self.stop = runs_dir, [], 0, threading.Event()

    def run(self):
        store, last = None, 0
        while not self.stop.is_set():
            try:
                store = store or Store(self.runs_dir)
                rows = store.metrics_since_all(last)
                if rows:
                    assert rows[0][0] > last
                    last = rows[-1][0]
                    self.rows += len(rows)
                store.list_runs()
                store.reap_lost()
            except Exception as e:
                if store is not None or "no runs" not in str(e):  # before the first run exists is fine
                    self.errors.append(repr(e))
            time.sleep(0.05)


def test_parallel_sweep_of_8_runs_completes_intact_while_a_reader_polls(tmp_path):
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, grid='"optimizer.lr" = [0.01, 0.02, 0.05, 0.1]\n"train.seed" = [1, 2]')
    reader = PollingReader(runs_dir)
    reader.start()
    result = cli("run", path, "--parallel", "4", "--runs-dir", runs_dir)
    reader.stop.set()
    reader.join()
    assert result.returncode == 0, result.stderr
    assert reader.errors == []
    store = Store(runs_dir)
    runs = store.list_runs()
    assert len(runs) == 8 and {r["status"] for r in runs} == {"completed"}
    for run in runs:
        steps = train_loss_steps(store, run["id"])
        assert steps == sorted(set(steps)) and steps[-1] == run["total_steps"]  # no gap at the end, no duplicate
        assert len(store.metrics_since(run["id"], keys=["val_acc"])) == 3
    assert reader.rows == store.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    # they really overlapped, by the scheduler's own record (not by comparing timestamps): it forked four
    # workers before it saw the first one end
    events = [line.split(" ", 1)[1] for line in
              next((runs_dir / "_scheduler").glob("scheduler-*.log")).read_text().splitlines()]
    first_end = next(i for i, e in enumerate(events) if " ended: " in e)
    assert sum(e.startswith("forked ") for e in events[:first_end]) == 4


def test_kill_9_marks_the_run_lost_within_10s_and_resume_finishes_it(tmp_path):
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, name="long", epochs=40, batch_size=8)
    started = start_detached(path, runs_dir)
    run_id = started["runs"][0]
    store = Store(runs_dir)
    checkpoint = store.run_dir(run_id) / "checkpoint.json"
    wait_for(lambda: checkpoint.exists() and store.get_run(run_id)["step"] > 0, 60)
    run = store.get_run(run_id)
    # take the scheduler down first (as a reboot or OOM killer would): only the heartbeat can tell then
    scheduler_pid = int(os.popen(f"pgrep -f 'experiments.lifecycle.*{runs_dir}'").read().split()[0])
    os.kill(scheduler_pid, signal.SIGKILL)
    os.kill(run["pid"], signal.SIGKILL)
    killed_at = time.time()
    rows_at_kill = len(store.metrics_since(run_id))
    lost = wait_for(lambda: [r for r in ls(runs_dir) if r["id"] == run_id and r["status"] == "lost"], 15, 0.5)
    assert time.time() - killed_at <= 10.0
    assert lost[0]["error"]
    assert len(store.metrics_since(run_id)) == rows_at_kill  # nothing recorded before is lost
    assert rows_at_kill > 0

    result = cli("resume", run_id, "--wait", "--runs-dir", runs_dir, timeout=240)
    assert result.returncode == 0, result.stderr + result.stdout
    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["step"] == run["total_steps"]
    steps = train_loss_steps(store, run_id)
    assert steps == sorted(set(steps))  # the resumed worker did not duplicate rows


def test_detached_sweep_survives_the_end_of_the_launching_session(tmp_path):
    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, name="detached", epochs=6, batch_size=16, grid='"optimizer.lr" = [0.01, 0.1]')
    # a login shell of its own: it launches the sweep, then its whole session is killed (an SSH drop)
    shell = subprocess.Popen(["bash", "-c", f"{sys.executable} -m experiments.cli run {path} --detach "
                              f"--runs-dir {runs_dir}; sleep 30"], cwd=PROJECT, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (runs_dir / "mxdash.db").exists() and ls(runs_dir), 60)
    os.killpg(shell.pid, signal.SIGHUP)
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait()
    runs = wait_for(lambda: (lambda rs: rs if all(r["status"] == "completed" for r in rs) else None)(ls(runs_dir)),
                    180, 1.0)
    assert len(runs) == 2


def test_stop_then_resume_equals_uninterrupted(tmp_path):
    mx = pytest.importorskip("mxnet")
    import numpy as np

    from experiments.train import checkpoint_files

    runs_dir = tmp_path / "runs"
    path = experiment(tmp_path, name="stopresume", epochs=30, batch_size=8,
                      grid='"experiment.description" = ["straight", "stopped"]')
    started = start_detached(path, runs_dir, "--parallel", "2")
    straight_id, stopped_id = started["runs"]
    store = Store(runs_dir)
    wait_for(lambda: store.get_run(stopped_id)["step"] > 100, 90)
    result = cli("stop", stopped_id, "--runs-dir", runs_dir)
    assert result.returncode == 0 and f"{stopped_id}: stopped" in result.stdout, result.stdout + result.stderr
    stopped_at = store.get_run(stopped_id)["step"]
    assert 0 < stopped_at < store.get_run(stopped_id)["total_steps"]
    result = cli("resume", stopped_id, "--wait", "--runs-dir", runs_dir, timeout=300)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: store.get_run(straight_id)["status"] == "completed", 120)
    a = mx.nd.load(str(checkpoint_files(store.run_dir(straight_id))[0]))
    b = mx.nd.load(str(checkpoint_files(store.run_dir(stopped_id))[0]))
    for key in a:
        assert np.array_equal(a[key].asnumpy(), b[key].asnumpy()), key


def test_unknown_ids_and_missing_runs_dir_exit_2(tmp_path):
    missing = cli("ls", "--runs-dir", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no runs directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = cli("ls", "--runs-dir", tmp_path / "empty")
    assert empty.returncode == 2 and "holds no runs yet" in empty.stderr
    Store(tmp_path / "runs", create=True)
    for command in (["show", "nope.1"], ["compare", "nope.1", "nope.2"], ["stop", "nope"], ["resume", "nope"],
                    ["export", "nope", "--out", tmp_path / "x"]):
        result = cli(*command, "--runs-dir", tmp_path / "runs")
        assert result.returncode == 2 and "unknown run or experiment id: nope" in result.stderr, command


def test_runs_dir_before_the_command_is_the_same_as_after_it(tmp_path):
    """`mxdash --runs-dir X` opens the dashboard on X, so `mxdash --runs-dir X ls` reads as that command on X (as
    `git -C X log` does), not as "unrecognized arguments: ls"."""
    store, run_ids = create_runs(tmp_path / "runs", {"data": {"name": "digits"}, "net": {"name": "mlp"}}, "front")
    after = cli("ls", "--runs-dir", tmp_path / "runs", "--json")
    assert after.returncode == 0, after.stderr
    for before in (["--runs-dir", tmp_path / "runs", "ls", "--json"], [f"--runs-dir={tmp_path / 'runs'}", "ls",
                                                                          "--json"]):
        result = cli(*before)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == json.loads(after.stdout)
        assert [run["id"] for run in json.loads(result.stdout)] == run_ids
    show = cli("--runs-dir", tmp_path / "runs", "show", run_ids[0])
    assert show.returncode == 0 and run_ids[0] in show.stdout, show.stderr


def test_ls_at_80_columns_cuts_no_value(tmp_path):
    """`mxdash ls` in an 80-column terminal on the shipped sweeps' kinds of rows (momentum, rmsprop, 600 epochs, a
    diverged loss, an LR range test) shows every value whole: narrower headers and cells first, then less useful
    columns leave; "moment…" or "600.0/…" says nothing a user can copy."""
    from experiments.metrics import LRFIND_KIND

    runs_dir = tmp_path / "runs"
    store = Store(runs_dir, create=True)
    configs = [{"net": {"name": "mlp"}, "data": {"name": "digits"}, "optimizer": {"name": name, "lr": lr},
                "train": {"seed": 0, "device": "cpu", "epochs": 600}}
               for name, lr in (("momentum", 0.05), ("rmsprop", 0.0026), ("nesterov", 1.0))]
    _, run_ids = store.create_experiment("playground", None, configs[0], {}, configs)
    store.update_run(run_ids[0], status="completed", epoch=600.0, train_loss=1.73e-05, best_val_acc=0.993)
    store.update_run(run_ids[1], status="running", epoch=212.5, train_loss=0.4586, best_val_acc=0.763)
    store.update_run(run_ids[2], status="diverged", epoch=3.0, train_loss=6.12e9, best_val_acc=0.1)
    _, (lrfind_id,) = store.create_experiment("playground-lrfind", None, configs[0], {}, [configs[0]])
    store.update_run(lrfind_id, kind=LRFIND_KIND, status="completed", step=93, lr=0.089)
    result = subprocess.run([sys.executable, "-m", "experiments.cli", "ls", "--runs-dir", str(runs_dir)],
                            capture_output=True, text=True, cwd=PROJECT, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout and max(map(len, lines)) <= 80, result.stdout
    for run_id, *cells in ((run_ids[0], "momentum", "600/600", "1.73e-05", "0.993"),
                           (run_ids[1], "rmsprop", "0.0026", "212.5/600", "0.4586"),
                           (run_ids[2], "nesterov", "diverged", "6.12e+09"), (lrfind_id, "0.089", "93 st")):
        row = next(line for line in lines if line.startswith(run_id + " "))
        assert all(f" {cell} " in f" {row} " for cell in cells), (cells, row)


def test_newer_schema_is_refused(tmp_path):
    store = Store(tmp_path / "runs", create=True)
    store.conn.execute("PRAGMA user_version = 99")
    result = cli("ls", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "written by a newer mxdash (schema 99" in result.stderr
