"""The dashboard's reads. Everything here runs in thread workers, never on the UI thread, and imports no Textual.

`Poller.poll()` reads through the store's own read API (experiments/store.py, "dashboard reads") only what changed:
- run rows whose cheap signature changed (skipped entirely when `data_version` says nobody committed);
- new metric rows (`id > tail`, in bounded chunks) of the runs whose history the model holds;
- the history of the runs the views want (`set_wanted`: the plotted runs, the detail screen's run), one run at a
  time by the (run_id, id) index, up to the same tail, so every row is read exactly once.

So a store of 10,000 runs and 1M metric rows costs one narrow scan of the runs table to paint, and only the rows
of the runs on screen after that (reading every row first took 18 s before the first screen of runs was usable).

Artifacts (confusion matrices, boundary frames, LR suggestions) of the wanted runs are read the same way, only new
rows, for the keys the views want (`set_wanted(..., artifact_keys)`): tui/artifacts.py. Experiment rows (name and
file, for the LR sweep the LR effects view plans) are read once per new experiment id.

Ids must only grow for `id > tail` to see every row. When runs disappear (gc), a run is claimed again (resume
deletes and re-records its rows past the checkpoint) or the largest id went down, a store without AUTOINCREMENT
may hand out ids at or below the tail again: then the poller drops what it holds and reads the wanted runs again
from the current tail (`PollResult.reset`), so no row is missed.

The data source is injected: `store_factory(runs_dir)` returns an `experiments.store.Store` (the default) or any
object with `list_runs()` and `metrics_since_all(after_id)` (read whole), which is how tests feed fakes.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from experiments.store import DB_NAME, Store, StoreError

from tui.artifacts import ArtifactBatch, ArtifactReader
from tui.model import MetricBatch

FIRST_PAGE_RUNS = 100  # the first poll reads only the newest runs: a screenful paints before the whole table is read
RUN_ROWS_PER_POLL = 2000  # run rows read and decoded per poll (~40 ms of worker time)
METRIC_CHUNK_ROWS = 100_000  # new rows per poll while catching up (~0.15 s of worker time)
HISTORY_ROWS = 200_000  # history rows per poll when the views want runs the model does not hold yet
REAP_EVERY_S = 5.0
READY, MISSING, BROKEN = "ready", "missing", "broken"  # store states: readable, not made yet, cannot be read


def default_store_factory(runs_dir) -> Store:
    return Store(runs_dir)


@dataclass
class PollResult:
    """What one poll read. `more`: call again at once (catching up, or wanted runs still loading)."""

    run_rows: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    batch: MetricBatch = field(default_factory=MetricBatch)
    reset: bool = False  # drop every series before applying the batch (they are read again)
    loaded: list[str] = field(default_factory=list)  # runs whose whole history is in this batch
    artifacts: ArtifactBatch = field(default_factory=ArtifactBatch)
    experiments: list[dict] = field(default_factory=list)  # experiment rows seen for the first time
    more: bool = False
    state: str = READY
    message: str | None = None  # why the store cannot be read, or a read error
    lost: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    first: bool = False

    @property
    def store_ok(self) -> bool:
        return self.state == READY


class Poller:
    """Reads the store incrementally. One instance per app; `poll()` is serialised by a lock."""

    def __init__(self, runs_dir, store_factory: Callable | None = None, chunk_rows: int = METRIC_CHUNK_ROWS,
                 history_rows: int = HISTORY_ROWS, reap_every: float = REAP_EVERY_S,
                 clock: Callable[[], float] = time.time):
        self.runs_dir = Path(runs_dir)
        self.store_factory = store_factory or default_store_factory
        self.chunk_rows = chunk_rows
        self.history_rows = history_rows
        self.reap_every = reap_every
        self.clock = clock
        self.store = None
        self.tail_id = 0  # every row with id <= tail of every loaded run has been read
        self.loaded: set[str] = set()  # runs whose history the model holds
        self.wanted: frozenset[str] = frozenset()
        self.artifact_wants: dict[str, frozenset[str]] = {}  # artifact key -> the runs a view wants it of
        self.artifacts = ArtifactReader()
        self._experiments: set[str] = set()  # experiment ids whose row was read
        self._artifacts_readable = True  # False for stores without artifacts (fakes; schema < 3): nothing to wait for
        self._signatures: dict[str, tuple] = {}
        self._claims: dict[str, tuple] = {}  # run id -> (created, started): a change means its rows were redone
        self._data_version: int | None = None  # caught up at this version: a poll may skip everything
        self._runs_version: int | None = None  # the run rows were last compared at this version
        self._read_once = False  # every run row has been read once (the first poll reads a page)
        self._page: set[str] | None = None  # the runs of the first page
        self._more_runs = False  # changed run rows left for the next poll
        self._later: list[str] = []  # their ids, newest first
        self._later_signatures: dict[str, tuple] = {}
        self._tail_more = False
        self._last_reap = 0.0
        self._polls = 0
        self._closed = False
        self._lock = threading.Lock()

    # -- what to read ---------------------------------------------------------------------------------------------
    def set_wanted(self, run_ids: Iterable[str], artifacts: dict[str, Iterable[str]] | None = None) -> bool:
        """The runs whose metrics the views need, and (when given) artifact key -> the runs whose artifacts of that
        key they need (any thread). True when some of them are not read yet."""
        self.wanted = frozenset(run_ids)
        if artifacts is not None:
            self.artifact_wants = {key: frozenset(ids) for key, ids in artifacts.items()}
        return bool(self.wanted - self.loaded) or self.artifacts_pending

    def _artifact_pairs(self) -> set[tuple[str, str]]:
        """(run id, key) pairs to follow: of the runs read so far (the first paint of metrics comes first)."""
        loaded = self.loaded
        return {(rid, key) for key, ids in self.artifact_wants.items() for rid in ids if rid in loaded}

    @property
    def artifacts_pending(self) -> bool:
        """Artifact reads to do: first reads left over, newly wanted pairs, or pairs no longer wanted to forget."""
        if not self._artifacts_readable:
            return False
        return self.artifacts.pending or self.artifacts.to_do(self._artifact_pairs())

    @property
    def pending(self) -> list[str]:
        """Wanted runs (known to the store) whose history is not read yet."""
        known = self._signatures if self._read_once or self._page is None else self._page
        return sorted(rid for rid in self.wanted - self.loaded if rid in known)

    def invalidate(self) -> None:
        """Re-read run signatures next poll (after this process wrote to the store itself)."""
        self._data_version = self._runs_version = None

    # -- store ----------------------------------------------------------------------------------------------------
    def _open(self):
        if self.store is None:
            self.store = self.store_factory(self.runs_dir)
        return self.store

    def _open_failed(self, error: Exception) -> PollResult:
        """No store yet (MISSING: the empty state may suggest launching one) or one that cannot be read (BROKEN:
        its error is shown as it is, and nothing is suggested that would fail the same way)."""
        db = self.runs_dir / DB_NAME
        if self.runs_dir.exists() and not self.runs_dir.is_dir():
            return PollResult(state=BROKEN, message=f"{self.runs_dir} is not a directory (use another --runs-dir)")
        if isinstance(error, StoreError) and not db.exists():
            return PollResult(state=MISSING, message=str(error))
        text = str(error) if isinstance(error, StoreError) else f"{db}: {error}"
        return PollResult(state=BROKEN, message=text)

    def close(self) -> None:
        """Close the store; never waits for a poll in flight (that poll closes it when it ends)."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_store()
            finally:
                self._lock.release()

    def _close_store(self) -> None:
        if self.store is not None and hasattr(self.store, "close"):
            try:
                self.store.close()
            except Exception:
                pass
        self.store = None
        self._data_version = self._runs_version = None

    # -- polling --------------------------------------------------------------------------------------------------
    def poll(self) -> PollResult:
        with self._lock:
            start = time.perf_counter()
            first = self._polls == 0
            try:
                result = self._poll_locked(first)
            finally:
                if self._closed:
                    self._close_store()
            result.first = first
            result.elapsed = time.perf_counter() - start
            return result

    def _poll_locked(self, first: bool) -> PollResult:
        if self._closed:
            return PollResult(message="closed")
        try:
            store = self._open()
        except (StoreError, OSError, sqlite3.Error) as e:
            return self._open_failed(e)
        self._polls += 1
        try:
            if hasattr(store, "read_snapshot"):
                return self._poll(store, first)
            return self._poll_generic(store, first)
        except sqlite3.OperationalError as e:  # locked or busy: keep what was shown, try again next time
            self._close_store()
            return PollResult(message=f"store read failed: {e}")
        except sqlite3.DatabaseError as e:  # the file stopped being a database under us
            self._close_store()
            return PollResult(state=BROKEN, message=f"{self.runs_dir / DB_NAME}: {e}")

    def _reap(self, store, now: float) -> list[str]:
        """Best effort: mark runs whose worker vanished `lost` (a write; a reader must not fail on it)."""
        if not hasattr(store, "reap_lost") or now - self._last_reap < self.reap_every:
            return []
        self._last_reap = now
        try:
            return list(store.reap_lost(now=now) or [])
        except (sqlite3.Error, OSError):
            return []

    def _poll(self, store, first: bool) -> PollResult:
        if first and hasattr(store, "newest_runs"):
            # The newest runs only (the table's default order is newest first): 10,000 runs took 0.3-0.9 s to read
            # and decode before anything could be drawn. The next poll loads what the views want of them, the
            # one after reads every run row.
            with store.read_snapshot():
                self.tail_id = store.max_metric_id()
                page = store.newest_runs(FIRST_PAGE_RUNS, decode=("config",))
            self._page = {row["id"] for row in page}
            return PollResult(run_rows=page, more=True)
        if not self._read_once and self.pending and self._page is not None:
            result = PollResult()  # the plotted runs of the first page, before the whole runs table
            with store.read_snapshot():
                rows = self._load_history(store, result)
            result.batch = MetricBatch.from_rows(rows) if rows else result.batch
            result.more = True
            return result
        result = PollResult(lost=self._reap(store, self.clock()))
        version = store.data_version()
        full = not self._read_once  # the first complete read (after the first page)
        if (version == self._data_version and not result.lost and not full and not self._tail_more
                and not self.pending and not self._more_runs and not self.artifacts_pending):
            return result  # nobody committed anything and nothing new is wanted
        with store.read_snapshot():
            if version != self._runs_version or result.lost or full or self._more_runs:
                result.run_rows, result.removed, redone = self._changed_runs(store, version)
                self._runs_version = version
                self._read_once = True
            else:  # no commit since the runs were read: only wanted history to load
                redone = False
            max_id = store.max_metric_id()
            rows: list = []
            if full and self._page is None:
                self.tail_id = max_id  # (no first page) history up to here is read run by run, as wanted
            elif result.removed or redone or max_id < self.tail_id:
                result.reset = True  # ids may be handed out again: read the wanted runs afresh
                self.loaded.clear()
                self.artifacts.reset()
                self.tail_id = max_id
                self._tail_more = False
            else:
                tail = store.metrics_after(self.tail_id, self.chunk_rows)
                self._tail_more = len(tail) >= self.chunk_rows
                if tail:
                    self.tail_id = tail[-1][0]
                    rows = [row for row in tail if row[1] in self.loaded]
            rows += self._load_history(store, result)
            result.artifacts = self._read_artifacts(store)
            result.experiments = self._new_experiments(store, result.run_rows)
        result.more = self._tail_more or bool(self.pending) or self._more_runs or self.artifacts.pending
        if not result.more:
            self._data_version = version  # caught up: the next poll may skip when nothing changed
        if rows:
            result.batch = MetricBatch.from_rows(rows)
        return result

    def _load_history(self, store, result: PollResult) -> list:
        rows: list = []
        for run_id in self.pending:
            if len(rows) >= self.history_rows:
                break
            rows.extend(store.run_history(run_id, self.tail_id))
            self.loaded.add(run_id)
            result.loaded.append(run_id)
        return rows

    def _read_artifacts(self, store) -> ArtifactBatch:
        if not hasattr(store, "newest_artifacts"):
            self._artifacts_readable = False
            return ArtifactBatch()
        try:
            return self.artifacts.read(store, self._artifact_pairs())
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # a store older than the artifacts table (schema 3)
                self._artifacts_readable = False
                return ArtifactBatch()
            raise

    def _new_experiments(self, store, run_rows: list[dict]) -> list[dict]:
        new = sorted({row.get("experiment_id") for row in run_rows} - self._experiments - {None})
        if not new or not hasattr(store, "experiments_by_ids"):
            return []
        self._experiments.update(new)
        return store.experiments_by_ids(new)

    def _changed_runs(self, store, version=None) -> tuple[list[dict], list[str], bool]:
        """Changed run rows, removed ids, and whether a loaded run was created or claimed again."""
        if self._later and version == self._runs_version:  # nothing committed since: the next part of the list
            changed, self._later = self._later[:RUN_ROWS_PER_POLL], self._later[RUN_ROWS_PER_POLL:]
            self._more_runs = bool(self._later)
            for rid in changed:
                self._signatures[rid] = self._later_signatures.pop(rid)
            return self._fetch(store, changed), [], False
        signatures = store.run_signatures()
        changed = [rid for rid, sig in signatures.items() if self._signatures.get(rid) != sig]
        removed = [rid for rid in self._signatures if rid not in signatures]
        # At most RUN_ROWS_PER_POLL rows per poll, newest first: decoding 10,000 rows at once held the GIL for
        # 0.3-0.9 s, and the UI (a tab switch, the first plot) waited behind it. The rest stay "changed".
        changed.reverse()
        later = changed[RUN_ROWS_PER_POLL:]
        changed = changed[:RUN_ROWS_PER_POLL]
        self._later_signatures = {rid: signatures[rid] for rid in later}
        for rid in later:
            if rid in self._signatures:
                signatures[rid] = self._signatures[rid]
            else:
                del signatures[rid]
        self._more_runs, self._later = bool(later), later
        self._signatures = signatures
        rows = self._fetch(store, changed)
        redone = False
        for row in rows:
            claim = (row.get("created"), row.get("started"))
            previous = self._claims.get(row["id"])
            # created again (same id after a gc) or claimed again (a resume re-records rows past its checkpoint)
            if previous is not None and row["id"] in self.loaded and (
                    previous[0] != claim[0] or (previous[1] is not None and previous[1] != claim[1])):
                redone = True
            self._claims[row["id"]] = claim
        for rid in removed:
            self._claims.pop(rid, None)
            self.loaded.discard(rid)
        return rows, removed, redone

    def _fetch(self, store, run_ids: list[str]) -> list[dict]:
        # config decoded here (filters, columns, legends need it); summary and versions when a view shows them
        return store.runs_by_ids(run_ids, decode=("config",)) if run_ids else []

    def _poll_generic(self, store, first: bool) -> PollResult:
        """Any object with list_runs() and metrics_since_all(after_id): whole rows compared, every metric read."""
        self._artifacts_readable = False  # (no artifacts API)
        result = PollResult()
        runs = {run["id"]: run for run in store.list_runs()}
        result.removed = [rid for rid in self._signatures if rid not in runs]
        for rid in result.removed:
            self._signatures.pop(rid, None)
        for rid, run in runs.items():
            signature = (json.dumps(run, sort_keys=True, default=str),)
            if self._signatures.get(rid) != signature:
                result.run_rows.append(run)
            self._signatures[rid] = signature
        if first:
            result.more = True
            return result
        rows = [tuple(r) for r in store.metrics_since_all(self.tail_id)][: self.chunk_rows]
        result.more = len(rows) >= self.chunk_rows
        if rows:
            result.batch = MetricBatch.from_rows(rows)
            self.tail_id = result.batch.max_id
        self.loaded |= set(runs)
        return result


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
