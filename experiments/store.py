"""The run store: one SQLite database (WAL mode) in the runs directory, plus one folder per run.

Workers write runs, metrics and status here; the CLI and the dashboard only read it. This module imports only the
standard library (and psutil, lazily) so the dashboard can use it without mxnet.

Concurrency: every write is a short `BEGIN IMMEDIATE` transaction (taking the write lock up front, so SQLite's busy
handler waits instead of failing a lock upgrade with "database is locked"), with a long busy timeout. Readers in WAL
mode never block writers.

Ownership: a run belongs to at most one worker at a time. A worker claims a queued run with a compare-and-set that
hands it a lease (a token stored in `runs.owner`); every write a worker makes (metrics, status, heartbeat) names its
lease and is refused with `NotOwner` when the run has moved on (stopped before it started, re-queued by a resume,
claimed by someone else). Resume re-queues with a compare-and-set too and bumps `generation`, so two resumes of one
run cannot both win.

Readers never need to write: marking runs whose worker (or scheduler) vanished is best effort; when the store
cannot record it (disk full, read-only), the rows a reader returns carry the derived status anyway.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from pathlib import Path

from experiments.metrics import ACTIVE, FINISHED, LOST, QUEUED, RESUMABLE, RUNNING, STATUSES, STOPPED  # noqa: F401

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: SQLite's own locking alone
    fcntl = None

SCHEMA_VERSION = 3  # 3: the artifacts table (issue 11); 2 -> 3 only creates it
DB_NAME = "mxdash.db"
BUSY_TIMEOUT_S = 120.0
HEARTBEAT_STALE_S = 5.0  # a running run whose heartbeat is older than this and whose PID is gone is `lost`
REMOTE_HEARTBEAT_STALE_S = 120.0  # a run on another host: only the heartbeat can tell
SCHEDULER_START_GRACE_S = 30.0  # a scheduler row without a live process this long after creation never started
REAP_BUSY_TIMEOUT_S = 2.0  # readers mark lost runs best effort: they never wait long for the write lock

# Latest values kept on the run row, so listing 10,000 runs never touches the metrics table.
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
    # schema 2: ownership, scheduling and liveness
    "owner": "TEXT",                  # lease of the worker that claimed the run (NULL while queued)
    "generation": "INTEGER DEFAULT 0",  # +1 at every re-queue: a claim names the generation it was started for
    "scheduler_id": "INTEGER",        # the scheduler that owns the queued run
    "threads": "INTEGER",             # OpenMP threads planned for the run (resume uses the same: results depend on it)
    "launched": "REAL",               # when the scheduler started its worker (fork or spawn)
    "first_step_at": "REAL",          # when the first training step of this attempt was done
    "progress_at": "REAL",            # last flush from the training loop itself (the heartbeat thread does not count)
    "checkpoint_step": "INTEGER",     # step of the last committed checkpoint (NULL: none was ever written)
    "kind": "TEXT DEFAULT 'train'",  # metrics.RUN_KINDS: 'train', or 'lrfind' (LR range test: experiments/range_test.py)
    # runs on Ray (experiments/cluster.py): `ray:ADDRESS` they run on, the node of the current attempt, its token
    "cluster": "TEXT", "node": "TEXT", "cluster_task": "TEXT",
}
JSON_COLUMNS = ("config", "summary", "versions")

METRICS_TABLE = """CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL NOT NULL,
    wall REAL NOT NULL, key TEXT NOT NULL, value REAL
)"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, file TEXT, created REAL NOT NULL,
    config TEXT NOT NULL, grid TEXT NOT NULL, parallel INTEGER, per_gpu INTEGER DEFAULT 1
);
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())});
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment_id, idx);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
{METRICS_TABLE};
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, id);
CREATE TABLE IF NOT EXISTS experiment_counters (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schedulers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, pid INTEGER, pid_started REAL, host TEXT,
    started REAL, heartbeat REAL, ended REAL, status TEXT NOT NULL DEFAULT 'starting', exit TEXT,
    threads INTEGER, parallel INTEGER, log TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL NOT NULL,
    wall REAL NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, key, id);
"""
SCHEDULER_ALIVE = ("starting", "running")


class StoreError(Exception):
    """A problem the user can fix (missing runs dir, unknown id, newer schema, damaged file): the CLI prints it,
    exit code 2."""


class StoreWriteError(StoreError):
    """A write failed (disk full, read-only file system, I/O error). `disk_full` tells the commonest case apart."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full


class NotOwner(Exception):
    """A worker wrote to a run it no longer owns (stopped, re-queued or claimed by another worker)."""


class ClaimRefused(Exception):
    """A worker could not claim a run: it is not queued for this scheduler and generation any more."""


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


def new_lease(pid: int, generation: int) -> str:
    return f"{socket.gethostname()}:{pid}:{generation}:{secrets.token_hex(4)}"


def _row_to_run(row: sqlite3.Row) -> dict:
    run = dict(row)
    for key in JSON_COLUMNS:
        if run.get(key):
            run[key] = json.loads(run[key])
    return run


def describe_sqlite_error(error: BaseException, path: Path) -> StoreWriteError:
    """A write failure as the user needs to read it: what failed, where, and the commonest cause named."""
    name = getattr(error, "sqlite_errorname", "")
    text = str(error)
    disk_full = name == "SQLITE_FULL" or "disk is full" in text or getattr(error, "errno", None) == 28
    if disk_full:
        return StoreWriteError(f"disk full: cannot write to {path} ({text}); free space on that file system, then "
                               "`mxdash resume EXPERIMENT` finishes what was interrupted", disk_full=True)
    return StoreWriteError(f"cannot write to {path}: {text}")


READ_RETRY_S = 10.0


def _reads(method):
    """A read that survives the moments after mxdash.db-wal was deleted under running workers: until a worker's
    next write restores the rows (recover_lost_wal, about a second), new readers get SQLite's "disk I/O error".
    Such a read is retried for READ_RETRY_S, then reported as a sentence naming the file (never a traceback)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        deadline = time.monotonic() + READ_RETRY_S
        while True:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as e:
                if "disk I/O error" not in str(e) or self.conn.in_transaction:
                    raise StoreError(f"cannot read {self.path}: {e}") from e
                if time.monotonic() > deadline:
                    raise StoreError(f"cannot read {self.path}: {e}; if {self.wal_path.name} was deleted while "
                                     "runs were writing, their rows come back at their next write; if no run is "
                                     "writing any more, `PRAGMA integrity_check` on the file tells what is left") from e
                self.recover_lost_wal()
                time.sleep(0.2)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot read {self.path}: {e}") from e
    return wrapper


class Store:
    """Access to one runs directory. Cheap to create; open one per process (or per thread)."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, create: bool = False):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.path = self.runs_dir / DB_NAME
        self._lock_fd = None
        self._unrecorded: dict[str, dict] = {}  # run id -> fields a reader derived but could not write
        new = not self.path.exists()
        if new:
            if not create:
                if not self.runs_dir.exists():
                    raise StoreError(f"no runs directory at {self.runs_dir} (start one with `mxdash run FILE`)")
                raise StoreError(f"{self.runs_dir} holds no runs yet (no {DB_NAME}); start one with `mxdash run FILE`")
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._wal_inode: int | None = None
        self.conn = None
        deadline = time.monotonic() + READ_RETRY_S
        while True:
            try:
                self.conn = self._connect()
                self._init_schema(new)
                break
            except sqlite3.OperationalError as e:
                # right after mxdash.db-wal was deleted under running workers, opening reads an index of frames
                # that are gone ("disk I/O error") until a worker's next write restores them: wait for that
                if "disk I/O error" not in str(e) or time.monotonic() > deadline:
                    self._open_failed(e)
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                time.sleep(0.2)
            except sqlite3.DatabaseError as e:
                self._open_failed(e)
        self._note_wal()

    def _open_failed(self, e: sqlite3.DatabaseError):
        """The first statement reads the file: garbage, a truncated copy or another program's file fails here."""
        if getattr(self, "conn", None) is not None:
            self.conn.close()
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in str(e):
            raise StoreError(f"{self.path}: cannot open the run store ({e}); check that {self.runs_dir} is "
                             "a writable directory, or use another --runs-dir") from None
        raise StoreError(f"{self.path} is not a readable mxdash store ({e}); move it aside (or restore it "
                         "from a backup) and mxdash starts a new one, or use another --runs-dir") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            return self._configure(conn)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # WAL + synchronous=NORMAL: a commit is an append to the WAL with no fsync (the WAL is synced at
        # checkpoints). A crash of a process loses nothing committed; a power cut may lose the last commits. The
        # training loop commits about once a second per run and must not wait on the disk for each.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    # -- a deleted WAL ------------------------------------------------------------------------------------------
    @property
    def wal_path(self) -> Path:
        return self.path.with_name(DB_NAME + "-wal")

    def _note_wal(self) -> None:
        try:
            self._wal_inode = os.stat(self.wal_path).st_ino
        except OSError:
            self._wal_inode = None

    def _wal_replaced(self) -> bool:
        """True when the WAL this connection has open is no longer the file at mxdash.db-wal (deleted, or
        deleted and re-created by another process): its rows exist only in this process's open file."""
        if self._wal_inode is None:
            return False
        try:
            return os.stat(self.wal_path).st_ino != self._wal_inode
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def recover_lost_wal(self) -> bool:
        """If mxdash.db-wal was deleted while this connection had it open (a user cleaning up "temp files" while
        runs write): copy every row in it into mxdash.db (a checkpoint through this connection still reads the
        unlinked file), then reconnect, so no row is lost and this process never writes into a file nobody else
        reads. Called before every write (under the write lock) and by readers before they read."""
        if not self._wal_replaced():
            return False
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # nothing more to save through this connection
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        self.conn = self._connect()
        self._note_wal()
        import sys

        print(f"mxdash: {self.wal_path} was deleted while this process was using it; its rows were copied back "
              f"into {self.path}", file=sys.stderr)
        return True

    def _init_schema(self, new: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]  # garbage fails here (see __init__)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer mxdash (schema {version}, this one reads {SCHEMA_VERSION}); "
                "upgrade mxdash or use another --runs-dir"
            )
        if version == SCHEMA_VERSION:
            self._add_missing_run_columns()
            return
        lock_fd = self._write_lock_fd()
        if lock_fd is not None:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one process creates or upgrades; the others wait, then see it done
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() \
                    and not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                raise StoreError(f"{self.path} holds another program's tables, not an mxdash store; use another "
                                 "--runs-dir")
            if version < SCHEMA_VERSION:
                self._create_or_upgrade(version)
        finally:
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
        self._add_missing_run_columns()

    def _create_or_upgrade(self, version: int) -> None:
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once, on the file
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            if version == 1:
                self._migrate_v1()
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise describe_sqlite_error(e, self.path) from e
        # The schema goes into the main database file now, so losing the WAL later can lose recent rows but never
        # makes the store look empty.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2: metric ids become AUTOINCREMENT (never reused after `mxdash gc`), experiment counters
        remember the highest number ever given to a name, and the runs table gets the ownership columns."""
        self.conn.execute(METRICS_TABLE.replace("metrics", "metrics_v2", 1))
        self.conn.execute("INSERT INTO metrics_v2 SELECT id, run_id, step, epoch, wall, key, value FROM metrics")
        self.conn.execute("DROP TABLE metrics")
        self.conn.execute("ALTER TABLE metrics_v2 RENAME TO metrics")
        self.conn.execute("CREATE TABLE IF NOT EXISTS experiment_counters (name TEXT PRIMARY KEY, last INTEGER NOT NULL)")
        for name, exp_id in self.conn.execute("SELECT name, id FROM experiments").fetchall():
            suffix = exp_id.rsplit("-", 1)[-1]
            if suffix.isdigit():
                self.conn.execute("INSERT INTO experiment_counters (name, last) VALUES (?, ?) ON CONFLICT(name) "
                                  "DO UPDATE SET last = MAX(last, excluded.last)", (name, int(suffix)))

    def _add_missing_run_columns(self) -> None:
        """A column added to RUN_COLUMNS reaches existing stores on their next open (ALTER TABLE ADD COLUMN)."""
        present = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
        missing = [name for name in RUN_COLUMNS if name not in present]
        if not missing:
            return
        with self.write():
            present = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
            for name in missing:
                if name not in present:
                    decl = RUN_COLUMNS[name].replace("PRIMARY KEY", "").replace("NOT NULL", "")
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- transactions -------------------------------------------------------------------------------------------
    def write(self, busy_timeout_s: float | None = None):
        return _WriteTxn(self, self._write_lock_fd(), busy_timeout_s)

    def _write_lock_fd(self):
        if fcntl is None:
            return None
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.runs_dir / (DB_NAME + ".writelock"), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # read-only runs dir, disk full with no inode left
                raise describe_sqlite_error(e, self.runs_dir / (DB_NAME + ".writelock")) from e
        return self._lock_fd

    # -- experiments --------------------------------------------------------------------------------------------
    def create_experiment(self, name: str, file: str | None, config: dict, grid: dict, runs: list[dict],
                          parallel: int | None = None, per_gpu: int = 1, threads: int | None = None,
                          scheduler_id: int | None = None) -> tuple[str, list[str]]:
        """Create an experiment and its runs (status `queued`) in one transaction. Returns (id, run ids).
        Experiment numbers are never reused, even after `mxdash gc` deleted the newest one."""
        now = time.time()
        with self.write():
            n = self.conn.execute(
                "INSERT INTO experiment_counters (name, last) VALUES (?, 1) ON CONFLICT(name) "
                "DO UPDATE SET last = last + 1 RETURNING last", (name,)).fetchone()[0]
            while self.conn.execute("SELECT 1 FROM experiments WHERE id = ?", (f"{name}-{n}",)).fetchone():
                n += 1  # ids made by an older mxdash before the counter existed
            self.conn.execute("UPDATE experiment_counters SET last = ? WHERE name = ?", (n, name))
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
                run_threads = run_config["train"].get("threads") or threads
                self.conn.execute(
                    "INSERT INTO runs (id, experiment_id, idx, status, config, net, dataset, optimizer, lr, seed, "
                    "device, created, epochs, threads, scheduler_id) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, exp_id, idx, json.dumps(run_config), run_config["net"]["name"],
                     run_config["data"]["name"], run_config["optimizer"]["name"], run_config["optimizer"]["lr"],
                     run_config["train"]["seed"], run_config["train"]["device"], now, run_config["train"]["epochs"],
                     run_threads, scheduler_id),
                )
        for run_id in run_ids:
            self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return exp_id, run_ids

    @_reads
    def get_experiment(self, exp_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            return None
        exp = dict(row)
        exp["config"], exp["grid"] = json.loads(exp["config"]), json.loads(exp["grid"])
        return exp

    # -- schedulers -------------------------------------------------------------------------------------------------
    def create_scheduler(self, threads: int | None, parallel: int | None, log: str | None = None) -> int:
        """A scheduler record, made before its process starts (runs name it in `scheduler_id`)."""
        with self.write():
            cursor = self.conn.execute("INSERT INTO schedulers (created, threads, parallel, log, host) "
                                       "VALUES (?, ?, ?, ?, ?)",
                                       (time.time(), threads, parallel, log, socket.gethostname()))
            return cursor.lastrowid

    def scheduler_started(self, scheduler_id: int, pid: int, pid_started: float | None = None) -> None:
        now = time.time()
        with self.write():
            self.conn.execute("UPDATE schedulers SET pid = ?, pid_started = ?, host = ?, started = COALESCE(started, ?),"
                              " heartbeat = ?, status = 'running' WHERE id = ? AND status IN ('starting', 'running')",
                              (pid, pid_started or process_start_time(pid), socket.gethostname(), now, now,
                               scheduler_id))

    def scheduler_heartbeat(self, scheduler_id: int) -> None:
        with self.write():
            self.conn.execute("UPDATE schedulers SET heartbeat = ? WHERE id = ?", (time.time(), scheduler_id))

    def scheduler_ended(self, scheduler_id: int, status: str = "ended", exit_reason: str | None = None) -> None:
        with self.write():
            self.conn.execute("UPDATE schedulers SET status = ?, ended = ?, exit = ? WHERE id = ? AND status IN "
                              "('starting', 'running')", (status, time.time(), exit_reason, scheduler_id))

    @_reads
    def get_scheduler(self, scheduler_id: int | None) -> dict | None:
        if scheduler_id is None:
            return None
        row = self.conn.execute("SELECT * FROM schedulers WHERE id = ?", (scheduler_id,)).fetchone()
        return dict(row) if row else None

    def scheduler_alive(self, scheduler: dict | None, now: float | None = None) -> bool:
        """Whether a scheduler can still start its queued runs: its process lives (this host) or it beat recently."""
        if scheduler is None or scheduler["status"] not in SCHEDULER_ALIVE:
            return False
        now = now or time.time()
        if scheduler["pid"] is None:
            return now - scheduler["created"] < SCHEDULER_START_GRACE_S
        if scheduler["host"] == socket.gethostname():
            return pid_alive(scheduler["pid"], scheduler["pid_started"])
        return now - (scheduler["heartbeat"] or scheduler["created"]) < REMOTE_HEARTBEAT_STALE_S

    # -- runs -----------------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "log.txt"

    @_reads
    def get_run(self, run_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._overlay(_row_to_run(row)) if row else None

    @_reads
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
        return [self._overlay(_row_to_run(r)) for r in self.conn.execute(query, args)]

    def _overlay(self, run: dict) -> dict:
        """What this reader derived but could not record (see reap_lost) shows anyway."""
        fields = self._unrecorded.get(run.get("id"))
        if fields and run.get("status") in ACTIVE:
            run.update(fields)
        return run

    @_reads
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

    @staticmethod
    def _encode(fields: dict) -> dict:
        for key in JSON_COLUMNS:
            if key in fields and not isinstance(fields[key], (str, type(None))):
                fields[key] = json.dumps(fields[key])
        unknown = set(fields) - set(RUN_COLUMNS)
        if unknown:
            raise KeyError(f"not run columns: {sorted(unknown)}")
        return fields

    def _check_lease(self, run_id: str, lease: str | None) -> None:
        """Inside a write transaction: the run is still owned by `lease` (None: no check, for in-process tools)."""
        if lease is None:
            return
        row = self.conn.execute("SELECT owner, status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotOwner(f"run {run_id} is no longer in the store (deleted by `mxdash gc`?)")
        if row["owner"] != lease:
            raise NotOwner(f"run {run_id} is now owned by another worker or was re-queued ({row['status']})")

    def update_run(self, run_id: str, lease: str | None = None, **fields) -> None:
        fields = self._encode(fields)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write():
            self._check_lease(run_id, lease)
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def claim_run(self, run_id: str, pid: int, host: str | None = None, scheduler_id: int | None = None,
                  generation: int | None = None) -> str:
        """A worker takes a queued run: one compare-and-set (queued, not stopped, still this scheduler's and this
        generation's) that makes it `running` with the worker's PID and a new lease. Returns the lease; raises
        ClaimRefused saying why when the run moved on (stopped, resumed elsewhere, already claimed)."""
        now = time.time()
        with self.write():
            row = self.conn.execute("SELECT status, generation, scheduler_id, stop_requested, owner FROM runs "
                                    "WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise ClaimRefused(f"run {run_id} is not in the store")
            refusal = None
            if row["status"] != QUEUED:
                refusal = f"run {run_id} is {row['status']}, not queued"
            elif row["stop_requested"]:
                refusal = f"run {run_id} was stopped before it started"
            elif scheduler_id is not None and row["scheduler_id"] != scheduler_id:
                refusal = f"run {run_id} was handed to scheduler {row['scheduler_id']}"
            elif generation is not None and row["generation"] != generation:
                refusal = f"run {run_id} was re-queued meanwhile (generation {row['generation']})"
            if refusal:
                raise ClaimRefused(refusal)
            lease = new_lease(pid, row["generation"])
            self.conn.execute(
                "UPDATE runs SET status = 'running', owner = ?, pid = ?, pid_started = ?, host = ?, heartbeat = ?, "
                "progress_at = ?, started = ?, ended = NULL, error = NULL, traceback = NULL, first_step_at = NULL "
                "WHERE id = ?",
                (lease, pid, process_start_time(pid), host or socket.gethostname(), now, now, now, run_id))
            return lease

    def finish_run(self, run_id: str, status: str, lease: str | None = None, **fields) -> None:
        assert status in FINISHED, status
        now = time.time()
        self.update_run(run_id, lease, status=status, ended=now, heartbeat=now, **fields)

    def end_unclaimed(self, run_id: str, generation: int, pid: int, status: str, error: str) -> bool:
        """The scheduler records how a worker it started ended, when that worker could not record it itself: only
        while the run is still that worker's (its PID, or still queued for it in the same generation)."""
        now = time.time()
        with self.write():
            cursor = self.conn.execute(
                "UPDATE runs SET status = ?, error = ?, ended = ?, heartbeat = COALESCE(heartbeat, ?) "
                "WHERE id = ? AND generation = ? AND (status = 'running' AND pid = ? OR status = 'queued')",
                (status, error, now, now, run_id, generation, pid))
            return cursor.rowcount == 1

    def request_stop(self, run_id: str) -> str:
        """Ask a run to stop. Queued runs stop at once; running ones at their next step. Returns the new status.
        The flag stays set until a resume re-queues the run, so a worker claiming it later is refused."""
        with self.write():
            row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown run id: {run_id}")
            if row["status"] == QUEUED:
                self.conn.execute("UPDATE runs SET status = 'stopped', ended = ?, stop_requested = 1 WHERE id = ?",
                                  (time.time(), run_id))
                return STOPPED
            if row["status"] == RUNNING:
                self.conn.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))
            return row["status"]

    @_reads
    def stop_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def requeue(self, run_id: str, scheduler_id: int | None = None, allowed: tuple = RESUMABLE) -> bool:
        """Resume's compare-and-set: a run in one of `allowed` statuses becomes queued for `scheduler_id`, in a new
        generation. False when it is not (another resume won, or it is running)."""
        with self.write():
            cursor = self.conn.execute(
                f"UPDATE runs SET status = 'queued', stop_requested = 0, ended = NULL, error = NULL, traceback = NULL, "
                f"pid = NULL, owner = NULL, diverged_step = NULL, generation = generation + 1, scheduler_id = ? "
                f"WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})", (scheduler_id, run_id, *allowed))
            return cursor.rowcount == 1

    def delete_runs(self, run_ids: list[str]) -> None:
        import shutil

        with self.write():
            for run_id in run_ids:
                self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                self.conn.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
                self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            self.conn.execute("DELETE FROM experiments WHERE id NOT IN (SELECT DISTINCT experiment_id FROM runs)")
        for run_id in run_ids:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # -- metrics --------------------------------------------------------------------------------------------------
    def append_metrics(self, run_id: str, rows: list[tuple], latest: dict | None = None,
                       lease: str | None = None, progress: bool = True, artifacts: list[tuple] = ()) -> None:
        """Append (step, epoch, wall, key, value) rows, refresh the heartbeat (and, from the training loop,
        `progress_at`) and the run row's latest values, all in one transaction, so a reader never sees metrics
        without the matching run row. Refused with NotOwner when `lease` no longer owns the run. `artifacts`:
        (step, epoch, wall, key, payload) rows written in the same transaction (see the artifacts section)."""
        now = time.time()
        latest = dict(latest or {})
        latest["heartbeat"] = now
        if progress:
            latest["progress_at"] = now
        latest = self._encode(latest)
        sets = ", ".join(f"{k} = ?" for k in latest)
        with self.write():
            self._check_lease(run_id, lease)
            if rows:
                self.conn.executemany(
                    "INSERT INTO metrics (run_id, step, epoch, wall, key, value) VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, *row) for row in rows],
                )
            self._insert_artifacts(run_id, artifacts)
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*latest.values(), run_id))

    def heartbeat(self, run_id: str, lease: str | None = None) -> None:
        """From the worker's heartbeat thread: the process lives (not that the loop advances)."""
        self.append_metrics(run_id, [], lease=lease, progress=False)

    @_reads
    def metrics_since(self, run_id: str, after_id: int = 0, keys: list[str] | None = None) -> list[tuple]:
        """Metric rows of one run newer than `after_id`: (id, step, epoch, wall, key, value)."""
        query = "SELECT id, step, epoch, wall, key, value FROM metrics WHERE run_id = ? AND id > ?"
        args: list = [run_id, after_id]
        if keys:
            query += f" AND key IN ({', '.join('?' * len(keys))})"
            args.extend(keys)
        return self.conn.execute(query + " ORDER BY id", args).fetchall()

    @_reads
    def metrics_since_all(self, after_id: int = 0, run_ids: list[str] | None = None) -> list[tuple]:
        """Metric rows of all (or the given) runs newer than `after_id`: (id, run_id, step, epoch, wall, key, value)."""
        query = "SELECT id, run_id, step, epoch, wall, key, value FROM metrics WHERE id > ?"
        args: list = [after_id]
        if run_ids is not None:
            query += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
            args.extend(run_ids)
        return self.conn.execute(query + " ORDER BY id", args).fetchall()

    @_reads
    def metric_keys(self, run_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT key FROM metrics WHERE run_id = ?", (run_id,))]

    def delete_metrics_after(self, run_id: str, step: int, lease: str | None = None) -> None:
        """On resume from a checkpoint at `step`: rows past it will be recorded again by the resumed worker."""
        with self.write():
            self._check_lease(run_id, lease)
            self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
            self.conn.execute("DELETE FROM artifacts WHERE run_id = ? AND step > ?", (run_id, step))

    # -- liveness -------------------------------------------------------------------------------------------------
    @_reads
    def find_lost(self, now: float | None = None) -> dict[str, str]:
        """Run id -> reason, for active runs nobody will move on: a running run whose worker is gone (stale
        heartbeat and, on this host, a dead PID), and a queued run whose scheduler is gone."""
        now = now or time.time()
        host = socket.gethostname()
        lost: dict[str, str] = {}
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
                lost[row["id"]] = "worker vanished (killed, out of memory or machine restarted)"
        # queued runs that name a scheduler (every run made by this mxdash does; one without may come from an older
        # mxdash or a tool writing the store itself, and nothing tells whether something will start it)
        queued = self.conn.execute("SELECT id, experiment_id, scheduler_id FROM runs WHERE status = 'queued' "
                                   "AND scheduler_id IS NOT NULL").fetchall()
        schedulers: dict = {}
        for row in queued:
            sid = row["scheduler_id"]
            if sid not in schedulers:
                schedulers[sid] = self.get_scheduler(sid)
            scheduler = schedulers[sid]
            if not self.scheduler_alive(scheduler, now):
                pid = scheduler["pid"] if scheduler else None
                how = (scheduler or {}).get("exit") or ("never started" if pid is None else "died")
                lost[row["id"]] = (f"its scheduler (pid {pid}) {how} before starting it; "
                                   f"`mxdash resume {row['experiment_id']}` runs it")
        return lost

    def reap_lost(self, now: float | None = None) -> list[str]:
        """Mark `lost` every active run nobody will move on (see find_lost). Best effort: a reader that cannot
        write (disk full, lock held for long) still shows them lost, with the reason it could not record."""
        now = now or time.time()
        try:
            lost = self.find_lost(now)
        except StoreError:
            return []  # cannot even read: the caller's own read will say why
        if not lost:
            return []
        try:
            with self.write(busy_timeout_s=REAP_BUSY_TIMEOUT_S):
                for run_id, reason in lost.items():
                    self.conn.execute(
                        "UPDATE runs SET status = 'lost', ended = COALESCE(heartbeat, created), error = ? "
                        "WHERE id = ? AND status IN ('queued', 'running')", (reason, run_id))
                self._mark_dead_schedulers(now)
            for run_id in lost:
                self._unrecorded.pop(run_id, None)
        except StoreWriteError as e:
            for run_id, reason in lost.items():
                self._unrecorded[run_id] = {"status": LOST, "error": f"{reason} (not recorded: {e})"}
        return list(lost)

    def _mark_dead_schedulers(self, now: float) -> None:
        for row in self.conn.execute("SELECT * FROM schedulers WHERE status IN ('starting', 'running')").fetchall():
            scheduler = dict(row)
            if not self.scheduler_alive(scheduler, now):
                self.conn.execute("UPDATE schedulers SET status = 'dead', ended = ?, exit = COALESCE(exit, ?) "
                                  "WHERE id = ?", (now, "process gone", scheduler["id"]))

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

    @_reads
    def latest_metrics(self, run_id: str, prefix: str) -> dict[str, tuple[int, float | None]]:
        """The newest (step, value) of each metric key of one run starting with `prefix` (e.g. "dead/")."""
        rows = self.conn.execute(
            "SELECT key, step, value FROM metrics WHERE id IN (SELECT MAX(id) FROM metrics "
            "WHERE run_id = ? AND substr(key, 1, ?) = ? GROUP BY key) ORDER BY key",
            (run_id, len(prefix), prefix)).fetchall()
        return {key: (step, value) for key, step, value in rows}

    # -- artifacts ----------------------------------------------------------------------------------------------
    # Structured records too big or too nested for a metric value: confusion matrices, decision-boundary grids, LR
    # suggestions (issue 11). One row = (run, step, epoch, wall, key, JSON payload); keys are the ARTIFACT_* names in
    # experiments/metrics.py. delete_runs deletes a run's rows; a resume drops those after its checkpoint
    # (delete_metrics_after).
    def _insert_artifacts(self, run_id: str, rows) -> None:
        """Insert (step, epoch, wall, key, payload) rows inside the caller's write transaction."""
        if rows:
            self.conn.executemany(
                "INSERT INTO artifacts (run_id, step, epoch, wall, key, payload) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, step, epoch, wall, key, json.dumps(payload)) for step, epoch, wall, key, payload in rows])

    def append_artifacts(self, run_id: str, rows: list[tuple]) -> None:
        """Append (step, epoch, wall, key, payload) rows in a transaction of their own (payloads: JSON-able)."""
        with self.write():
            self._insert_artifacts(run_id, rows)

    def artifacts(self, run_id: str, key: str | None = None, after_id: int = 0) -> list[dict]:
        """A run's artifacts newer than `after_id` (all keys, or one), oldest first:
        dicts of id, step, epoch, wall, key and payload (decoded)."""
        query = "SELECT id, step, epoch, wall, key, payload FROM artifacts WHERE run_id = ? AND id > ?"
        args: list = [run_id, after_id]
        if key is not None:
            query += " AND key = ?"
            args.append(key)
        return [self._artifact(row) for row in self.conn.execute(query + " ORDER BY id", args)]

    def latest_artifact(self, run_id: str, key: str) -> dict | None:
        """The newest artifact of one key of a run (same dict as `artifacts`), or None."""
        row = self.conn.execute("SELECT id, step, epoch, wall, key, payload FROM artifacts "
                                "WHERE run_id = ? AND key = ? ORDER BY id DESC LIMIT 1", (run_id, key)).fetchone()
        return self._artifact(row) if row else None

    @staticmethod
    def _artifact(row, decode: bool = True) -> dict:
        return {"id": row[0], "step": row[1], "epoch": row[2], "wall": row[3], "key": row[4],
                "payload": json.loads(row[5]) if decode else row[5]}

    # -- dashboard reads ------------------------------------------------------------------------------------------
    # Read-only queries for the dashboard's poller (tui/poller.py), each one indexed SELECT; none of them writes.
    # Take them inside `read_snapshot()` so that runs and metrics come from one consistent state of the store.
    # Run rows get a `total_params` column: the weights count without decoding every net summary (10,000 summaries
    # took ~0.3 s of JSON parsing).
    PARAMS_COLUMN = ("CASE WHEN json_valid(summary) THEN json_extract(summary, '$.total_params') END "
                     "AS total_params")

    def read_snapshot(self):
        """A context manager: every read inside sees the same committed state (one deferred read transaction)."""
        import contextlib  # here: this section stays self-contained

        @contextlib.contextmanager
        def snapshot():
            self.recover_lost_wal()  # a long-lived reader must not keep reading a deleted WAL
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
            rows = self._plain_rows(f"SELECT *, {self.PARAMS_COLUMN} FROM runs ORDER BY created, idx", ())
            rows = rows if wanted is None else [row for row in rows if row["id"] in wanted]
        else:
            rows = []
            for i in range(0, len(run_ids), 500):
                part = run_ids[i:i + 500]
                rows.extend(self._plain_rows(f"SELECT *, {self.PARAMS_COLUMN} FROM runs "
                                             f"WHERE id IN ({', '.join('?' * len(part))}) "
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
        rows = self._plain_rows(f"SELECT *, {self.PARAMS_COLUMN} FROM runs ORDER BY created DESC, idx LIMIT ?",
                                (int(limit),))
        for row in rows:
            for key in decode:
                if row.get(key):
                    try:
                        row[key] = json.loads(row[key])
                    except ValueError:
                        pass
        return rows

    def experiments_by_ids(self, experiment_ids: list[str]) -> list[dict]:
        """id, name, file (as given to `mxdash run` / `lrfind`) and created of these experiments."""
        rows = []
        for i in range(0, len(experiment_ids), 500):
            part = list(experiment_ids[i:i + 500])
            rows.extend(self._plain_rows(f"SELECT id, name, file, created FROM experiments "
                                         f"WHERE id IN ({', '.join('?' * len(part))})", part))
        return rows

    def max_artifact_id(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM artifacts").fetchone()[0]

    def artifact_heads(self, after_id: int) -> list[tuple[str, str, int]]:
        """(run_id, key, newest id) of every (run, key) with artifact rows past `after_id` (a range of the primary
        key: only the new rows are visited)."""
        return self.conn.execute("SELECT run_id, key, MAX(id) FROM artifacts WHERE id > ? GROUP BY run_id, key",
                                 (after_id,)).fetchall()

    def newest_artifacts(self, run_id: str, key: str, limit: int, after_id: int = 0,
                         decode: bool = True) -> list[dict]:
        """Up to `limit` of the newest artifacts of one key of a run with id > `after_id`, oldest first (the same
        dicts as `artifacts`; the (run_id, key, id) index, read backwards). `decode=False` leaves each payload as
        its JSON text, for a reader that decodes only what it shows."""
        rows = self.conn.execute("SELECT id, step, epoch, wall, key, payload FROM artifacts WHERE run_id = ? AND "
                                 "key = ? AND id > ? ORDER BY id DESC LIMIT ?",
                                 (run_id, key, after_id, int(limit))).fetchall()
        return [self._artifact(row, decode) for row in reversed(rows)]

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
    to bound the wait (max 0.28 s in the same test) at ~100x the commit rate real training needs.

    Every SQLite failure inside it surfaces as StoreWriteError naming the file and the cause (disk full first):
    when COMMIT fails SQLite may already have rolled back, so ROLLBACK runs only while a transaction is open
    (running it anyway raised "cannot rollback - no transaction is active" and hid the real error)."""

    def __init__(self, store: "Store", lock_fd: int | None, busy_timeout_s: float | None):
        self.store, self.lock_fd, self.path, self.busy_timeout_s = store, lock_fd, store.path, busy_timeout_s

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.conn

    def __enter__(self):
        if self.lock_fd is not None:
            self._lock()
        try:
            self.store.recover_lost_wal()  # under the write lock: no other writer is mid-transaction
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._unlock()
            raise describe_sqlite_error(e, self.path) from e
        except BaseException:
            self._unlock()
            raise
        return self.conn

    def _lock(self) -> None:
        if self.busy_timeout_s is None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + self.busy_timeout_s  # a reader's best-effort write gives up instead of waiting
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreWriteError(f"{self.path} is busy (another writer held it for "
                                          f"{self.busy_timeout_s:g} s)") from None
                time.sleep(0.01)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error as e:
                    self._rollback_if_open()
                    raise describe_sqlite_error(e, self.path) from e
                if self.store._wal_inode is None:
                    self.store._note_wal()
            else:
                self._rollback_if_open()
                if isinstance(exc, sqlite3.Error):
                    raise describe_sqlite_error(exc, self.path) from exc
        finally:
            self._unlock()
        return False

    def _rollback_if_open(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original failure is what the caller must see

    def _unlock(self):
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

