"""The dashboard's in-memory model: run rows and metric series, updated only by what the poller read.

Data flow (Memray-like): a timer starts a thread worker (tui.poller) that reads only new rows from the store and
groups them into numpy arrays off the UI thread; the UI thread applies the result here (cheap array appends) and
hands the model to the panes. Nothing in this module touches the database or Textual.

Contract with the plot panes (tui/panes.py):
- `DashboardModel.runs`: run id -> run row (dict, the store's columns; config/summary/versions decoded).
- `DashboardModel.series`: run id -> metric key -> `MetricSeries`.
- `MetricSeries.step/.epoch/.wall/.value`: float64 numpy views of the filled part (do not keep them across
  updates: a growing series reallocates; read them again after each `apply`).
- `DashboardModel.apply(rows, run_rows, removed, reset) -> Changes` (`.runs`: runs whose row changed, `.series`:
  runs that got new metric points, `.removed`: runs that disappeared from the store).
- `DashboardModel.flat(run_id)`: the run's config flattened to dotted keys, cached until its row changes.
- `DashboardModel.artifacts`: run id -> artifact key -> `tui.artifacts.ArtifactLog` (confusion matrices, boundary
  frames, LR suggestions of the runs the views want); `experiments`: experiment id -> {name, file, created}.

The poller hands each metric row over exactly once (it reads new rows by id and each run's history once), so the
model does not deduplicate; `reset` drops every series first (the poller reads the wanted runs again).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Iterable, Mapping, Sequence

import numpy as np

from tui.artifacts import ArtifactBatch, ArtifactLog, keep_for
from tui.grouping import flat_of

STEP, EPOCH, WALL, VALUE = range(4)


def row_json(row: Mapping | None, key: str):
    """A JSON column of a run row (`summary`, `versions`): the poller leaves them as text until a view needs them
    (parsing 10,000 net summaries cost 0.3 s of the first paint)."""
    value = row.get(key) if row else None
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


class MetricSeries:
    """An append-only series of (step, epoch, wall, value) points in one (4, capacity) float64 array.

    Appends are amortised O(1) (the capacity doubles). A batch whose first step is not after the last stored
    step rewinds the series first: a resumed run deletes its metrics past the checkpoint and records them again.
    `version` increases on every change, so a pane can tell cheaply whether it must redraw.
    """

    __slots__ = ("_points", "_n", "version")

    def __init__(self, capacity: int = 64):
        self._points = np.empty((4, max(int(capacity), 4)), dtype=np.float64)
        self._n = 0
        self.version = 0

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        last = f", last=({self.step[-1]:g}, {self.value[-1]:g})" if self._n else ""
        return f"MetricSeries(n={self._n}{last})"

    @property
    def step(self) -> np.ndarray:
        return self._points[STEP, : self._n]

    @property
    def epoch(self) -> np.ndarray:
        return self._points[EPOCH, : self._n]

    @property
    def wall(self) -> np.ndarray:
        return self._points[WALL, : self._n]

    @property
    def value(self) -> np.ndarray:
        return self._points[VALUE, : self._n]

    @property
    def capacity(self) -> int:
        return self._points.shape[1]

    def last(self) -> float | None:
        """The latest value (None when empty or NaN)."""
        if not self._n:
            return None
        v = float(self._points[VALUE, self._n - 1])
        return None if np.isnan(v) else v

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= self.capacity:
            return
        grown = np.empty((4, max(need, 2 * self.capacity)), dtype=np.float64)
        grown[:, : self._n] = self._points[:, : self._n]
        self._points = grown

    def truncate_from_step(self, step: float) -> None:
        """Drop every point with step >= `step` (steps are non-decreasing, so it is a suffix)."""
        if self._n:
            keep = int(np.searchsorted(self.step, step, side="left"))
            if keep < self._n:
                self._n = keep
                self.version += 1

    def extend(self, step, epoch, wall, value) -> None:
        """Append points; each argument is a sequence or array of the same length (None values become NaN)."""
        step = np.asarray(step, dtype=np.float64)
        n = step.shape[0]
        if n == 0:
            return
        if self._n and step[0] <= self._points[STEP, self._n - 1]:
            self.truncate_from_step(step[0])
        self._reserve(n)
        end = self._n + n
        self._points[STEP, self._n:end] = step
        self._points[EPOCH, self._n:end] = np.asarray(epoch, dtype=np.float64)
        self._points[WALL, self._n:end] = np.asarray(wall, dtype=np.float64)
        self._points[VALUE, self._n:end] = np.asarray(value, dtype=np.float64)
        self._n = end
        self.version += 1

    def append(self, step: float, epoch: float, wall: float, value: float | None) -> None:
        self.extend((step,), (epoch,), (wall,), (np.nan if value is None else value,))


@dataclass
class MetricBatch:
    """Metric rows grouped per (run id, key) into arrays, built in the poll worker so the UI thread only appends.

    `groups` maps (run_id, key) -> (step, epoch, wall, value) arrays in id order; `max_id` is the newest row id.
    """

    groups: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    max_id: int = 0
    rows: int = 0

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence]) -> "MetricBatch":
        """Group store rows `(id, run_id, step, epoch, wall, key, value)` (ordered by id)."""
        if not rows:
            return cls()
        n = len(rows)
        codes: dict[tuple[str, str], int] = {}
        setdefault = codes.setdefault
        labels = np.fromiter((setdefault((r[1], r[5]), len(codes)) for r in rows), dtype=np.int64, count=n)
        cols = np.empty((4, n), dtype=np.float64)
        cols[STEP] = np.fromiter(map(itemgetter(2), rows), dtype=np.float64, count=n)
        cols[EPOCH] = np.fromiter(map(itemgetter(3), rows), dtype=np.float64, count=n)
        cols[WALL] = np.fromiter(map(itemgetter(4), rows), dtype=np.float64, count=n)
        cols[VALUE] = np.array(list(map(itemgetter(6), rows)), dtype=np.float64)  # NULL (None) -> NaN
        max_id = max(map(itemgetter(0), rows))
        groups = {}
        if len(codes) == 1:
            groups[next(iter(codes))] = (cols[STEP], cols[EPOCH], cols[WALL], cols[VALUE])
        else:
            order = np.argsort(labels, kind="stable")
            bounds = np.searchsorted(labels[order], np.arange(len(codes) + 1))
            sorted_cols = cols[:, order]
            for pair, code in codes.items():
                lo, hi = bounds[code], bounds[code + 1]
                block = sorted_cols[:, lo:hi]
                groups[pair] = (block[STEP], block[EPOCH], block[WALL], block[VALUE])
        return cls(groups=groups, max_id=int(max_id), rows=n)

    def merge(self, other: "MetricBatch") -> "MetricBatch":
        """This batch followed by `other` (both in id order)."""
        groups = dict(self.groups)
        for pair, arrays in other.groups.items():
            if pair in groups:
                groups[pair] = tuple(np.concatenate((a, b)) for a, b in zip(groups[pair], arrays))
            else:
                groups[pair] = arrays
        return MetricBatch(groups, max(self.max_id, other.max_id), self.rows + other.rows)


@dataclass
class Changes:
    """What one `apply` changed: run ids whose row changed or appeared, got new points, or disappeared."""

    runs: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    artifacts: set[str] = field(default_factory=set)  # runs that got (or lost) artifacts

    def __bool__(self) -> bool:
        return bool(self.runs or self.series or self.removed or self.artifacts)

    @property
    def all(self) -> set[str]:
        return self.runs | self.series | self.removed | self.artifacts


class DashboardModel:
    """Run rows and metric series of one runs directory, as far as the poller has read them."""

    def __init__(self) -> None:
        self.runs: dict[str, dict] = {}
        self.series: dict[str, dict[str, MetricSeries]] = {}
        self.points: int = 0  # metric points held, all runs
        self.artifacts: dict[str, dict[str, ArtifactLog]] = {}
        self.experiments: dict[str, dict] = {}
        self._flats: dict[str, tuple[dict, dict]] = {}  # run id -> (row it was made from, flat config)

    # -- queries --------------------------------------------------------------------------------------------------
    def experiments(self) -> list[str]:
        """Experiment ids, oldest first."""
        first: dict[str, float] = {}
        for run in self.runs.values():
            exp = run.get("experiment_id") or ""
            created = run.get("created") or 0.0
            if exp not in first or created < first[exp]:
                first[exp] = created
        return sorted(first, key=lambda e: (first[e], e))

    def runs_of(self, experiment_id: str) -> list[str]:
        return [rid for rid, run in self.runs.items() if run.get("experiment_id") == experiment_id]

    def keys(self, run_ids: Iterable[str] | None = None) -> list[str]:
        """Metric keys present in the given (default: all) runs, sorted."""
        ids = self.series.keys() if run_ids is None else run_ids
        found: set[str] = set()
        for rid in ids:
            found.update(self.series.get(rid, ()))
        return sorted(found)

    def get_series(self, run_id: str, key: str) -> MetricSeries | None:
        return self.series.get(run_id, {}).get(key)

    def latest_artifact(self, run_id: str, key: str):
        """The newest `tui.artifacts.Artifact` of one key of a run the poller follows, or None."""
        log = self.artifacts.get(run_id, {}).get(key)
        return log.latest() if log is not None else None

    def flat(self, run_id: str) -> dict:
        """The run's resolved config as dotted keys (cached per row object: rows are replaced when they change)."""
        row = self.runs.get(run_id)
        cached = self._flats.get(run_id)
        if cached is not None and cached[0] is row:
            return cached[1]
        flat = flat_of(row) if row is not None else {}
        self._flats[run_id] = (row, flat)
        return flat

    # -- updates --------------------------------------------------------------------------------------------------
    def apply(self, rows: MetricBatch | Sequence[Sequence] | None, run_rows: Iterable[Mapping] = (),
              removed: Iterable[str] = (), reset: bool = False, artifacts: ArtifactBatch | None = None,
              experiments: Iterable[Mapping] = ()) -> Changes:
        """Apply changed run rows, removed run ids, new metric rows (store tuples or a pre-grouped `MetricBatch`)
        and new artifacts. `reset` first drops every series and artifact (they are about to be read again)."""
        changes = Changes()
        if reset:
            changes.series.update(self.series)
            changes.artifacts.update(self.artifacts)
            self.series.clear()
            self.artifacts.clear()
            self.points = 0
        for experiment in experiments:
            self.experiments[experiment["id"]] = dict(experiment)
        for run_id in removed:
            self.artifacts.pop(run_id, None)
            if self.runs.pop(run_id, None) is not None or run_id in self.series:
                dropped = self.series.pop(run_id, {})
                self.points -= sum(len(s) for s in dropped.values())
                self._flats.pop(run_id, None)
                changes.removed.add(run_id)
        if artifacts:
            self._apply_artifacts(artifacts, changes)
        for row in run_rows:
            run_id = row["id"]
            row = dict(row)
            if self.runs.get(run_id) != row:
                self.runs[run_id] = row
                changes.runs.add(run_id)
        if rows is not None:
            batch = rows if isinstance(rows, MetricBatch) else MetricBatch.from_rows(list(rows))
            for (run_id, key), (step, epoch, wall, value) in batch.groups.items():
                if run_id in changes.removed:
                    continue
                per_run = self.series.setdefault(run_id, {})
                series = per_run.get(key)
                if series is None:
                    series = per_run[key] = MetricSeries(capacity=max(64, len(step)))
                before = len(series)
                series.extend(step, epoch, wall, value)
                self.points += len(series) - before
                changes.series.add(run_id)
        return changes

    def _apply_artifacts(self, batch: ArtifactBatch, changes: Changes) -> None:
        for run_id, key in batch.forgotten:
            per_run = self.artifacts.get(run_id)
            if per_run is not None and per_run.pop(key, None) is not None:
                changes.artifacts.add(run_id)
                if not per_run:
                    del self.artifacts[run_id]
        for (run_id, key), items in batch.items.items():
            if run_id in changes.removed:
                continue
            per_run = self.artifacts.setdefault(run_id, {})
            log = per_run.get(key)
            if log is None:
                log = per_run[key] = ArtifactLog(keep_for(key))
            log.extend(items)
            changes.artifacts.add(run_id)
