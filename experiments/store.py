"""The run store: one SQLite database (WAL mode) in the runs directory, plus one folder per run.

Workers write runs, metrics and status here; the CLI and the dashboard only read it (and mark runs whose worker
vanished as `lost`). This module imports only the standard library so the dashboard can use it without mxnet.

Concurrency: every write is a short `BEGIN IMMEDIATE` transaction (taking the write lock up front, so SQLite's busy
handler waits instead of failing a lock upgrade with "database is locked"), with a long busy timeout. Readers in WAL
mode never block writers.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: SQLite's own locking alone
    fcntl = None

SCHEMA_VERSION = 1
DB_NAME = "mxdash.db"
BUSY_TIMEOUT_S = 120.0
HEARTBEAT_STALE_S = 5.0  # a running run whose heartbeat is older than this and whose PID is gone is `lost`
REMOTE_HEARTBEAT_STALE_S = 120.0  # a run on another host: only the heartbeat can tell
from experiments.metrics import ACTIVE, FINISHED, STATUSES  # noqa: E402  (re-exported for callers)

# Latest values kept on the run row, so listing 1,000 runs never touches the metrics table.
RUN_COLUMNS = {
    "id": "TEXT PRIMARY KEY",
    "experiment_id": "TEXT NOT NULL",
    "idx": "INTEGER NOT NULL",
    "status": "TEXT NOT NULL",
    "config": "TEXT NOT NULL",  # full resolved config, JSON
    "net": "TEXT", "dataset": "TEXT", "optimizer": "TEXT", "lr": "REAL", "seed": "INTEGER", "device": "TEXT",
    "created": "REAL", "started": "REAL", "ended": "REAL", "heartbeat": "REAL",
    "pid": "INTEGER", "pid_started": "REAL", "host": "TEXT",
    "step": "INTEGER DEFAULT 0", "epoch": "REAL DEFAULT 0", "epochs": "INTEGER", "total_steps": "INTEGER",
    "train_loss": "REAL", "val_loss": "REAL", "val_acc": "REAL", "best_val_acc": "REAL", "best_val_loss": "REAL",
    "samples_per_s": "REAL", "gpus": "TEXT",
    "error": "TEXT", "traceback": "TEXT", "diverged_step": "INTEGER",
    "summary": "TEXT", "versions": "TEXT", "git_commit": "TEXT",
    "stop_requested": "INTEGER DEFAULT 0",
}
JSON_COLUMNS = ("config", "summary", "versions")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, file TEXT, created REAL NOT NULL,
    config TEXT NOT NULL, grid TEXT NOT NULL, parallel INTEGER, per_gpu INTEGER DEFAULT 1
);
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())});
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment_id, idx);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL NOT NULL,
    wall REAL NOT NULL, key TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, id);
"""


class StoreError(Exception):
    """A problem the user can fix (missing runs dir, unknown id, newer schema): the CLI prints it, exit code 2."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("MXDASH_RUNS", "runs"))


def pid_alive(pid: int | None, started: float | None) -> bool:
    """True when process `pid` exists, is not a zombie, and (if known) started at `started` (guards PID reuse)."""
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except Exception:  # NoSuchProcess, AccessDenied, psutil missing: fall back to signal 0
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _row_to_run(row: sqlite3.Row) -> dict:
    run = dict(row)
    for key in JSON_COLUMNS:
        if run.get(key):
            run[key] = json.loads(run[key])
    return run


class Store:
    """Access to one runs directory. Cheap to create; open one per process (or per thread)."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, create: bool = False):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.path = self.runs_dir / DB_NAME
        if not self.path.exists():
            if not create:
                if not self.runs_dir.exists():
                    raise StoreError(f"no runs directory at {self.runs_dir} (start one with `mxdash run FILE`)")
                raise StoreError(f"{self.runs_dir} holds no runs yet (no {DB_NAME}); start one with `mxdash run FILE`")
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._init_schema(create)

    def _init_schema(self, create: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer mxdash (schema {version}, this one reads {SCHEMA_VERSION}); "
                "upgrade mxdash or use another --runs-dir"
            )
        if version == SCHEMA_VERSION:
            return
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once, on the file
        with self.write():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- transactions -------------------------------------------------------------------------------------------
    def write(self):
        return _WriteTxn(self.conn, self._write_lock_fd())

    def _write_lock_fd(self):
        if fcntl is None:
            return None
        if getattr(self, "_lock_fd", None) is None:
            self._lock_fd = os.open(self.runs_dir / (DB_NAME + ".writelock"), os.O_RDWR | os.O_CREAT, 0o644)
        return self._lock_fd

    # -- experiments --------------------------------------------------------------------------------------------
    def create_experiment(self, name: str, file: str | None, config: dict, grid: dict, runs: list[dict],
                          parallel: int | None = None, per_gpu: int = 1) -> tuple[str, list[str]]:
        """Create an experiment and its runs (status `queued`) in one transaction. Returns (id, run ids)."""
        now = time.time()
        with self.write():
            count = self.conn.execute("SELECT COUNT(*) FROM experiments WHERE name = ?", (name,)).fetchone()[0]
            n = count + 1
            while self.conn.execute("SELECT 1 FROM experiments WHERE id = ?", (f"{name}-{n}",)).fetchone():
                n += 1
            exp_id = f"{name}-{n}"
            self.conn.execute(
                "INSERT INTO experiments (id, name, file, created, config, grid, parallel, per_gpu) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (exp_id, name, file, now, json.dumps(config), json.dumps(grid), parallel, per_gpu),
            )
            run_ids = []
            for idx, run_config in enumerate(runs, start=1):
                run_id = f"{exp_id}.{idx}"
                run_ids.append(run_id)
                self.conn.execute(
                    "INSERT INTO runs (id, experiment_id, idx, status, config, net, dataset, optimizer, lr, seed, "
                    "device, created, epochs) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, exp_id, idx, json.dumps(run_config), run_config["net"]["name"],
                     run_config["data"]["name"], run_config["optimizer"]["name"], run_config["optimizer"]["lr"],
                     run_config["train"]["seed"], run_config["train"]["device"], now, run_config["train"]["epochs"]),
                )
        for run_id in run_ids:
            self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return exp_id, run_ids

    def get_experiment(self, exp_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            return None
        exp = dict(row)
        exp["config"], exp["grid"] = json.loads(exp["config"]), json.loads(exp["grid"])
        return exp

    # -- runs -----------------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "log.txt"

    def get_run(self, run_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to_run(row) if row else None

    def list_runs(self, status: str | None = None, experiment: str | None = None,
                  columns: str = "*") -> list[dict]:
        query, args = f"SELECT {columns} FROM runs WHERE 1=1", []
        if status:
            query += " AND status = ?"
            args.append(status)
        if experiment:
            query += " AND experiment_id = ?"
            args.append(experiment)
        query += " ORDER BY created, idx"
        return [_row_to_run(r) for r in self.conn.execute(query, args)]

    def resolve(self, ids: list[str]) -> list[dict]:
        """Runs named by run ids or experiment ids, in order; unknown ids raise StoreError naming them."""
        runs, unknown = [], []
        for ident in ids:
            run = self.get_run(ident)
            if run is not None:
                runs.append(run)
                continue
            members = self.list_runs(experiment=ident)
            if members:
                runs.extend(members)
            else:
                unknown.append(ident)
        if unknown:
            raise StoreError(f"unknown run or experiment id: {', '.join(unknown)} in {self.runs_dir} "
                             "(see `mxdash ls`)")
        seen, unique = set(), []
        for run in runs:
            if run["id"] not in seen:
                seen.add(run["id"])
                unique.append(run)
        return unique

    def update_run(self, run_id: str, **fields) -> None:
        for key in JSON_COLUMNS:
            if key in fields and not isinstance(fields[key], (str, type(None))):
                fields[key] = json.dumps(fields[key])
        unknown = set(fields) - set(RUN_COLUMNS)
        if unknown:
            raise KeyError(f"not run columns: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write():
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def claim_run(self, run_id: str, pid: int, host: str | None = None) -> None:
        """A worker takes a run: status running, its PID, host and heartbeat."""
        now = time.time()
        self.update_run(run_id, status="running", pid=pid, pid_started=process_start_time(pid),
                        host=host or socket.gethostname(), heartbeat=now, started=now, ended=None, error=None,
                        traceback=None, stop_requested=0)

    def finish_run(self, run_id: str, status: str, **fields) -> None:
        assert status in FINISHED, status
        self.update_run(run_id, status=status, ended=time.time(), heartbeat=time.time(), **fields)

    def request_stop(self, run_id: str) -> str:
        """Ask a run to stop. Queued runs stop at once; running ones at their next flush. Returns the new status."""
        with self.write():
            row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown run id: {run_id}")
            if row["status"] == "queued":
                self.conn.execute("UPDATE runs SET status = 'stopped', ended = ?, stop_requested = 1 WHERE id = ?",
                                  (time.time(), run_id))
                return "stopped"
            if row["status"] == "running":
                self.conn.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))
            return row["status"]

    def stop_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def requeue(self, run_id: str) -> None:
        self.update_run(run_id, status="queued", stop_requested=0, ended=None, error=None, traceback=None,
                        pid=None, diverged_step=None)

    def delete_runs(self, run_ids: list[str]) -> None:
        import shutil

        with self.write():
            for run_id in run_ids:
                self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            self.conn.execute("DELETE FROM experiments WHERE id NOT IN (SELECT DISTINCT experiment_id FROM runs)")
        for run_id in run_ids:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # -- metrics --------------------------------------------------------------------------------------------------
    def append_metrics(self, run_id: str, rows: list[tuple], latest: dict | None = None) -> None:
        """Append (step, epoch, wall, key, value) rows, refresh the heartbeat and the run row's latest values,
        all in one transaction (so a reader never sees metrics without the matching run row)."""
        now = time.time()
        latest = dict(latest or {})
        latest["heartbeat"] = now
        sets = ", ".join(f"{k} = ?" for k in latest)
        with self.write():
            if rows:
                self.conn.executemany(
                    "INSERT INTO metrics (run_id, step, epoch, wall, key, value) VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, *row) for row in rows],
                )
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*latest.values(), run_id))

    def heartbeat(self, run_id: str) -> None:
        self.append_metrics(run_id, [])

    def metrics_since(self, run_id: str, after_id: int = 0, keys: list[str] | None = None) -> list[tuple]:
        """Metric rows of one run newer than `after_id`: (id, step, epoch, wall, key, value)."""
        query = "SELECT id, step, epoch, wall, key, value FROM metrics WHERE run_id = ? AND id > ?"
        args: list = [run_id, after_id]
        if keys:
            query += f" AND key IN ({', '.join('?' * len(keys))})"
            args.extend(keys)
        return self.conn.execute(query + " ORDER BY id", args).fetchall()

    def metrics_since_all(self, after_id: int = 0, run_ids: list[str] | None = None) -> list[tuple]:
        """Metric rows of all (or the given) runs newer than `after_id`: (id, run_id, step, epoch, wall, key, value)."""
        query = "SELECT id, run_id, step, epoch, wall, key, value FROM metrics WHERE id > ?"
        args: list = [after_id]
        if run_ids is not None:
            query += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
            args.extend(run_ids)
        return self.conn.execute(query + " ORDER BY id", args).fetchall()

    def metric_keys(self, run_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT key FROM metrics WHERE run_id = ?", (run_id,))]

    def delete_metrics_after(self, run_id: str, step: int) -> None:
        """On resume from a checkpoint at `step`: rows past it will be recorded again by the resumed worker."""
        with self.write():
            self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))

    # -- liveness -------------------------------------------------------------------------------------------------
    def reap_lost(self, now: float | None = None) -> list[str]:
        """Mark `lost` every running run whose worker is gone: stale heartbeat and (on this host) a dead PID."""
        now = now or time.time()
        host = socket.gethostname()
        lost = []
        rows = self.conn.execute(
            "SELECT id, pid, pid_started, host, heartbeat FROM runs WHERE status = 'running' AND heartbeat < ?",
            (now - HEARTBEAT_STALE_S,),
        ).fetchall()
        for row in rows:
            if row["host"] == host:
                gone = not pid_alive(row["pid"], row["pid_started"])
            else:
                gone = now - (row["heartbeat"] or 0) > REMOTE_HEARTBEAT_STALE_S
            if gone:
                lost.append(row["id"])
        if lost:
            with self.write():
                for run_id in lost:
                    self.conn.execute(
                        "UPDATE runs SET status = 'lost', ended = heartbeat, "
                        "error = 'worker vanished (killed, out of memory or machine restarted)' "
                        "WHERE id = ? AND status = 'running'", (run_id,))
        return lost

    # -- export / report queries (used by experiments/export.py and experiments/report.py) ------------------------
    def iter_metric_chunks(self, run_id: str, chunk_rows: int = 50_000):
        """Yield one run's metric rows in insertion order, `chunk_rows` at a time: lists of
        (id, step, epoch, wall, key, value). Keyset paging on the (run_id, id) index keeps memory flat on huge runs."""
        after_id = 0
        while True:
            rows = self.conn.execute(
                "SELECT id, step, epoch, wall, key, value FROM metrics WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
                (run_id, after_id, chunk_rows)).fetchall()
            if not rows:
                return
            yield rows
            after_id = rows[-1][0]

    def latest_metrics(self, run_id: str, prefix: str) -> dict[str, tuple[int, float | None]]:
        """The newest (step, value) of each metric key of one run starting with `prefix` (e.g. "dead/")."""
        rows = self.conn.execute(
            "SELECT key, step, value FROM metrics WHERE id IN (SELECT MAX(id) FROM metrics "
            "WHERE run_id = ? AND substr(key, 1, ?) = ? GROUP BY key) ORDER BY key",
            (run_id, len(prefix), prefix)).fetchall()
        return {key: (step, value) for key, step, value in rows}

    # -- dashboard reads ------------------------------------------------------------------------------------------
    # Read-only queries for the dashboard's poller (tui/poller.py), each one indexed SELECT; none of them writes.
    # Take them inside `read_snapshot()` so that runs and metrics come from one consistent state of the store.
    def read_snapshot(self):
        """A context manager: every read inside sees the same committed state (one deferred read transaction)."""
        import contextlib  # here: this section stays self-contained

        @contextlib.contextmanager
        def snapshot():
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error:
                    pass  # a read transaction has nothing to lose; never hide the reader's own exception

        return snapshot()

    def data_version(self) -> int:
        """Changes whenever another connection committed (SQLite's PRAGMA data_version): unchanged means there is
        nothing new to read."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def max_metric_id(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM metrics").fetchone()[0]

    def run_signatures(self) -> dict[str, tuple]:
        """Run id -> a cheap tuple that changes whenever the run's row changes (long text and JSON columns by
        length), for every run: one narrow scan instead of decoding every row on every poll."""
        long = set(JSON_COLUMNS) | {"traceback", "error", "gpus"}
        columns = [row[1] for row in self.conn.execute("PRAGMA table_info(runs)")]
        select = ", ".join(f"length({c})" if c in long else c for c in columns)
        return {row[0]: tuple(row) for row in self.conn.execute(f"SELECT {select} FROM runs")}

    def runs_by_ids(self, run_ids: list[str] | None = None, decode: tuple[str, ...] = JSON_COLUMNS) -> list[dict]:
        """Whole run rows of these ids (None: all runs), in creation order; unknown ids are skipped. Only the
        JSON columns in `decode` are parsed (the others stay text: 10,000 net summaries take ~0.3 s to parse)."""
        if run_ids is None or len(run_ids) > 2000:
            wanted = None if run_ids is None else set(run_ids)
            rows = self._plain_rows("SELECT * FROM runs ORDER BY created, idx", ())
            rows = rows if wanted is None else [row for row in rows if row["id"] in wanted]
        else:
            rows = []
            for i in range(0, len(run_ids), 500):
                part = run_ids[i:i + 500]
                rows.extend(self._plain_rows(f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(part))}) "
                                             "ORDER BY created, idx", part))
        for row in rows:
            for key in decode:
                if row.get(key):
                    try:
                        row[key] = json.loads(row[key])
                    except ValueError:
                        pass  # shown as the text it is
        return rows

    def newest_runs(self, limit: int, decode: tuple[str, ...] = JSON_COLUMNS) -> list[dict]:
        """The `limit` most recently created runs (a first screen of them, without scanning the whole table)."""
        rows = self._plain_rows("SELECT * FROM runs ORDER BY created DESC, idx LIMIT ?", (int(limit),))
        for row in rows:
            for key in decode:
                if row.get(key):
                    try:
                        row[key] = json.loads(row[key])
                    except ValueError:
                        pass
        return rows

    def _plain_rows(self, query: str, args) -> list[dict]:
        cursor = self.conn.cursor()
        cursor.row_factory = None  # dict(zip()) is 2x faster than dict(sqlite3.Row) over 10,000 rows
        cursor.execute(query, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def metrics_after(self, after_id: int, limit: int) -> list[tuple]:
        """Up to `limit` metric rows of all runs with id > `after_id`, in id order:
        (id, run_id, step, epoch, wall, key, value)."""
        return self.conn.execute(
            "SELECT id, run_id, step, epoch, wall, key, value FROM metrics WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit)).fetchall()

    def run_history(self, run_id: str, up_to_id: int) -> list[tuple]:
        """Every metric row of one run with id <= `up_to_id`, in id order (the (run_id, id) index):
        (id, run_id, step, epoch, wall, key, value)."""
        return self.conn.execute(
            "SELECT id, run_id, step, epoch, wall, key, value FROM metrics WHERE run_id = ? AND id <= ? ORDER BY id",
            (run_id, up_to_id)).fetchall()


class _WriteTxn:
    """A write transaction. Writers first queue on an flock: SQLite's busy handler sleeps with growing delays, so
    under contention a writer that just committed keeps winning while others starve (measured with 16 writers:
    single writes waited up to 7 s, one writer got 92 rows to another's 2,172). The flock is FIFO-fair enough
    to bound the wait (max 0.28 s in the same test) at ~100x the commit rate real training needs."""

    def __init__(self, conn: sqlite3.Connection, lock_fd: int | None):
        self.conn, self.lock_fd = conn, lock_fd

    def __enter__(self):
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except BaseException:  # e.g. disk full: never leave the connection inside a transaction
                    self.conn.execute("ROLLBACK")
                    raise
            else:
                self.conn.execute("ROLLBACK")
        finally:
            self._unlock()
        return False

    def _unlock(self):
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

