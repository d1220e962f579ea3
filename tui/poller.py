"""The dashboard's I/O side. Everything here runs in thread workers, never on the UI thread, and imports no Textual.

- `Poller.poll()` reads only what changed since the last poll: new metric rows (by id, in bounded chunks, grouped
  into numpy arrays here so the UI thread only appends) and the run rows whose cheap signature changed (one narrow
  SELECT over the runs table, skipped entirely when `PRAGMA data_version` says no other connection committed).
- `LogTail` follows a run's log file from the last offset read.
- `launch_experiment` / `resume_run` run the CLI in a subprocess (the dashboard never trains in-process).
- `probe_machine` reads CPU, memory and NVIDIA GPU use (pynvml when importable).

The data source is injected: `store_factory(runs_dir)` returns an `experiments.store.Store` (the default) or any
object with `list_runs()`, `metrics_since_all(after_id)` and optionally `reap_lost()`, `request_stop(run_id)`,
`log_path(run_id)`, which is how tests feed fakes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from experiments.store import JSON_COLUMNS, RUN_COLUMNS, Store, StoreError

from tui.model import MetricBatch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRIC_CHUNK_ROWS = 100_000  # rows per poll while catching up (~0.3 s of worker time: the UI stays responsive)
REAP_EVERY_S = 5.0
# Columns compared to tell whether a run row changed; long text/JSON columns by length only.
_LONG = set(JSON_COLUMNS) | {"traceback", "error", "gpus"}
SIGNATURE_SQL = "SELECT " + ", ".join(
    f"length({c})" if c in _LONG else c for c in RUN_COLUMNS) + " FROM runs"


def default_store_factory(runs_dir) -> Store:
    return Store(runs_dir)


@dataclass
class PollResult:
    """What one poll read. `more` is True while older metric rows are still pending (catching up)."""

    run_rows: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    batch: MetricBatch = field(default_factory=MetricBatch)
    more: bool = False
    store_ok: bool = True
    message: str | None = None  # why there is no store (empty state), or a read error
    lost: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    first: bool = False


class Poller:
    """Reads the store incrementally. One instance per app; `poll()` is serialised by a lock."""

    def __init__(self, runs_dir, store_factory: Callable | None = None, chunk_rows: int = METRIC_CHUNK_ROWS,
                 reap_every: float = REAP_EVERY_S, clock: Callable[[], float] = time.time):
        self.runs_dir = Path(runs_dir)
        self.store_factory = store_factory or default_store_factory
        self.chunk_rows = chunk_rows
        self.reap_every = reap_every
        self.clock = clock
        self.store = None
        self.last_metric_id = 0
        self._signatures: dict[str, tuple] = {}
        self._data_version: int | None = None
        self._last_reap = 0.0
        self._polls = 0
        self._closed = False
        self._lock = threading.Lock()

    # -- store --------------------------------------------------------------------------------------------------
    def _open(self):
        if self.store is None:
            self.store = self.store_factory(self.runs_dir)
        return self.store

    def close(self) -> None:
        """Close the store; never waits for a poll in flight (that poll closes it when it ends)."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self.close_unlocked()
            finally:
                self._lock.release()

    # -- polling --------------------------------------------------------------------------------------------------
    def poll(self) -> PollResult:
        with self._lock:
            try:
                return self._poll_locked()
            finally:
                if self._closed:
                    self.close_unlocked()

    def _poll_locked(self) -> PollResult:
        if self._closed:
            return PollResult(message="closed")
        if True:
            start = time.perf_counter()
            first = self._polls == 0
            try:
                store = self._open()
            except StoreError as e:
                return PollResult(store_ok=False, message=str(e), first=first,
                                  elapsed=time.perf_counter() - start)
            self._polls += 1
            try:
                result = self._poll(store, first)
            except sqlite3.DatabaseError as e:
                # a locked or half-created database: report it and try again next time with a fresh connection
                self.close_unlocked()
                return PollResult(message=f"store read failed: {e}", first=first,
                                  elapsed=time.perf_counter() - start)
            result.first = first
            result.elapsed = time.perf_counter() - start
            return result

    def invalidate(self) -> None:
        """Re-read run signatures next poll (after this process wrote to the store itself)."""
        self._data_version = None

    def close_unlocked(self) -> None:
        if self.store is not None and hasattr(self.store, "close"):
            try:
                self.store.close()
            except Exception:
                pass
        self.store = None
        self._data_version = None

    def _poll(self, store, first: bool) -> PollResult:
        result = PollResult()
        now = self.clock()
        reaped = False
        if hasattr(store, "reap_lost") and now - self._last_reap >= self.reap_every:
            self._last_reap = now
            try:
                result.lost = list(store.reap_lost(now=now) or [])
                reaped = bool(result.lost)
            except sqlite3.OperationalError:  # busy: next time
                pass
        conn = getattr(store, "conn", None)
        if not isinstance(conn, sqlite3.Connection):
            return self._poll_generic(store, first, result)
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and not reaped and not first:
            return result  # nobody committed anything since the last poll
        conn.execute("BEGIN")  # one read snapshot for metrics and runs
        try:
            # The first poll reads runs only, so the table paints at once; metrics stream in the next polls.
            limit = 0 if first else self.chunk_rows
            rows = conn.execute(
                "SELECT id, run_id, step, epoch, wall, key, value FROM metrics WHERE id > ? ORDER BY id LIMIT ?",
                (self.last_metric_id, limit)).fetchall() if limit else []
            result.more = first or len(rows) >= limit
            result.run_rows, result.removed = self._changed_runs(conn)
        finally:
            conn.execute("COMMIT")
        if not result.more:
            self._data_version = version  # caught up: the next poll may skip when nothing changed
        if rows:
            result.batch = MetricBatch.from_rows(rows)
            self.last_metric_id = result.batch.max_id
        return result

    def _changed_runs(self, conn: sqlite3.Connection) -> tuple[list[dict], list[str]]:
        signatures = {row[0]: tuple(row) for row in conn.execute(SIGNATURE_SQL)}
        changed = [rid for rid, sig in signatures.items() if self._signatures.get(rid) != sig]
        removed = [rid for rid in self._signatures if rid not in signatures]
        self._signatures = signatures
        rows: list[dict] = []
        if len(changed) > 200 and len(changed) > len(signatures) // 2:
            wanted = set(changed)
            rows = [_decode(r) for r in conn.execute("SELECT * FROM runs ORDER BY created, idx") if r["id"] in wanted]
        else:
            for i in range(0, len(changed), 500):
                part = changed[i:i + 500]
                rows.extend(_decode(r) for r in conn.execute(
                    f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(part))}) ORDER BY created, idx", part))
        return rows, removed

    def _poll_generic(self, store, first: bool, result: PollResult) -> PollResult:
        """Any object with list_runs() and metrics_since_all(after_id): compares whole rows."""
        runs = {run["id"]: run for run in store.list_runs()}
        result.removed = [rid for rid in self._signatures if rid not in runs]
        changed = []
        for rid, run in runs.items():
            sig = json.dumps(run, sort_keys=True, default=str)
            if self._signatures.get(rid) != sig:
                changed.append(run)
            self._signatures[rid] = sig
        for rid in result.removed:
            self._signatures.pop(rid, None)
        result.run_rows = changed
        if not first:
            rows = store.metrics_since_all(self.last_metric_id)
            rows = [tuple(r) for r in rows[: self.chunk_rows]]
            result.more = len(rows) >= self.chunk_rows
            if rows:
                result.batch = MetricBatch.from_rows(rows)
                self.last_metric_id = result.batch.max_id
        else:
            result.more = True
        return result


def _decode(row: sqlite3.Row) -> dict:
    run = dict(row)
    for key in JSON_COLUMNS:
        value = run.get(key)
        if isinstance(value, str) and value:
            try:
                run[key] = json.loads(value)
            except ValueError:
                pass
    return run


# -- log tail -------------------------------------------------------------------------------------------------------
class LogTail:
    """Follows a text file: `read()` returns the lines added since the last call (the last `initial_bytes` first)."""

    def __init__(self, path, initial_bytes: int = 64_000):
        self.path = Path(path)
        self.initial_bytes = initial_bytes
        self.offset: int | None = None
        self._partial = ""

    def read(self, max_bytes: int = 1_000_000) -> list[str]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if self.offset is None:
            self.offset = max(0, size - self.initial_bytes)
            skip_first = self.offset > 0
        else:
            skip_first = False
            if size < self.offset:  # truncated or rewritten
                self.offset, self._partial = 0, ""
        if size == self.offset:
            return []
        start = max(self.offset, size - max_bytes)
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        self.offset = size
        text = self._partial + data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        if skip_first and lines:
            lines = lines[1:]  # started mid-line
        return [line.rstrip("\r") for line in lines]


# -- subprocesses ---------------------------------------------------------------------------------------------------
@dataclass
class CommandResult:
    ok: bool
    message: str  # the error (stderr) or a one-line summary
    payload: dict = field(default_factory=dict)
    returncode: int = 0


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def launch_experiment(file, runs_dir, parallel: int | None = None, overrides: list[str] = (),
                      timeout: float = 120.0, runner=subprocess.run) -> CommandResult:
    """`mxdash run FILE --detach --json`: validates, creates the runs and starts a detached scheduler."""
    cmd = cli_command("run", str(file), "--detach", "--json", "--runs-dir", str(runs_dir))
    if parallel:
        cmd += ["--parallel", str(int(parallel))]
    for item in overrides:
        cmd += ["--set", item]
    return _run(cmd, timeout, runner, "launch")


def resume_run(run_ids, runs_dir, timeout: float = 60.0, runner=subprocess.run) -> CommandResult:
    """`mxdash resume ID... --runs-dir DIR`: returns at once; the runs continue detached."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return _run(cli_command("resume", *ids, "--runs-dir", str(runs_dir)), timeout, runner, "resume")


def _run(cmd: list[str], timeout: float, runner, what: str) -> CommandResult:
    try:
        proc = runner(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                      env=_cli_env(), cwd=str(PROJECT_ROOT))
    except subprocess.TimeoutExpired:
        return CommandResult(False, f"{what} timed out after {timeout:.0f} s", returncode=-1)
    except OSError as e:
        return CommandResult(False, f"{what} failed to start: {e}", returncode=-1)
    stdout, stderr = (proc.stdout or "").strip(), (proc.stderr or "").strip()
    if proc.returncode != 0:
        message = stderr or stdout or f"{what} failed (exit {proc.returncode})"
        return CommandResult(False, _last_lines(message), returncode=proc.returncode)
    payload: dict = {}
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                payload = json.loads(line)
                break
            except ValueError:
                continue
    return CommandResult(True, stdout.splitlines()[-1] if stdout else f"{what} ok", payload, proc.returncode)


def _last_lines(text: str, n: int = 12) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# -- machine status -------------------------------------------------------------------------------------------------
@dataclass
class GpuStatus:
    index: int
    name: str
    util: float  # percent
    mem_used: float  # bytes
    mem_total: float


@dataclass
class MachineStatus:
    cpu: float  # percent, all cores
    mem_used: float
    mem_total: float
    gpus: list[GpuStatus] = field(default_factory=list)


class MachineProbe:
    """CPU and memory from psutil; NVIDIA GPUs from pynvml when it imports and initialises, else none."""

    def __init__(self) -> None:
        self._nvml = None
        self._nvml_tried = False

    def _gpus(self) -> list[GpuStatus]:
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:
                self._nvml = None
        nvml = self._nvml
        if nvml is None:
            return []
        gpus = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(GpuStatus(i, name, float(util), float(mem.used), float(mem.total)))
        except Exception:
            return []
        return gpus

    def __call__(self) -> MachineStatus:
        import psutil

        mem = psutil.virtual_memory()
        return MachineStatus(cpu=psutil.cpu_percent(interval=None), mem_used=float(mem.total - mem.available),
                             mem_total=float(mem.total), gpus=self._gpus())
