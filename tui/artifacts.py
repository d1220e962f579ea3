"""Artifacts in the dashboard: confusion matrices, decision-boundary frames and LR suggestions (the ARTIFACT_* keys
of experiments/metrics.py), read incrementally in the poll worker and kept per run and key. No Textual here.

How `ArtifactReader.read` reads (inside the poller's read snapshot, through the store's read API):
- a (run, key) read for the first time gets its newest `FIRST_READ` rows (a run's last 120 boundary frames, not every
  frame since step 0);
- after that only new rows: `artifact_heads(head)` names the (run, key) pairs that got rows since the previous poll
  (a range of the primary key, so only the new rows are visited) and only those are read, each past its own tail.
  Artifact ids are AUTOINCREMENT: a new row always has a larger id than every row read before;
- first reads fetch at most ROWS_PER_POLL payloads per poll: 64 playground runs hold ~3,500 boundary frames of
  16 KB JSON each; the rest is read by the next polls, at once;
- payloads stay JSON text until a view uses one (`Artifact.payload`): decoding every frame held the GIL for over a
  second on a first read and ~30 ms per poll while 2 playground runs trained, and key presses waited behind it.
Boundary payloads become numpy arrays when decoded (uint8 classes and confidences), so a render only indexes them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from experiments.metrics import ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS

FIRST_READ = {ARTIFACT_BOUNDARY: 120}  # newest rows of a (run, key) read the first time; others: DEFAULT_FIRST_READ
DEFAULT_FIRST_READ = 400
KEEP = {ARTIFACT_BOUNDARY: 240}  # rows kept per (run, key), oldest dropped first; others: DEFAULT_KEEP
DEFAULT_KEEP = 1000
ROWS_PER_POLL = 400  # payloads decoded by first reads in one poll (~0.4 ms per boundary frame)


class Artifact:
    """One artifact row. Its JSON payload is decoded on first use (`payload`), by whichever thread needs it first:
    a live playground run records ~40 boundary frames a second and the Boundaries view draws one per run, so
    decoding every frame in the poll worker (~0.4 ms each, holding the GIL) was most of the poller's CPU and made
    key presses wait behind it (benchmarks/tui_bench.py, 2 runs training)."""

    __slots__ = ("id", "step", "epoch", "key", "_raw", "_payload")

    def __init__(self, id: int, step: int, epoch: float, payload=None, key: str = "", raw: str | None = None):
        self.id, self.step, self.epoch, self.key = id, step, epoch, key
        self._payload, self._raw = payload, raw

    @property
    def payload(self):
        if self._raw is not None:  # two threads decoding at once both get equal payloads: no lock needed
            self._payload, self._raw = decode_payload(self.key, json.loads(self._raw)), None
        return self._payload

    def __repr__(self) -> str:
        return f"Artifact(id={self.id}, step={self.step}, key={self.key!r})"


@dataclass
class ArtifactBatch:
    """What one poll read: new rows per (run, key) in id order, and the pairs no longer followed (their rows are
    dropped from the model)."""
    items: dict[tuple[str, str], list[Artifact]] = field(default_factory=dict)
    forgotten: set[tuple[str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.items or self.forgotten)


class ArtifactLog:
    """One run's artifacts of one key, oldest first, at most `keep`. `version` counts changes (change detection)."""

    __slots__ = ("items", "version", "keep")

    def __init__(self, keep: int) -> None:
        self.items: list[Artifact] = []
        self.version = 0
        self.keep = keep

    def __len__(self) -> int:
        return len(self.items)

    def latest(self) -> Artifact | None:
        return self.items[-1] if self.items else None

    def extend(self, new: list[Artifact]) -> None:
        """Append rows; rows starting at or before the last kept step replace it and what follows (a resumed run
        records its artifacts past the checkpoint again)."""
        if not new:
            return
        if self.items and new[0].step <= self.items[-1].step:
            self.items = [item for item in self.items if item.step < new[0].step]
        self.items.extend(new)
        if len(self.items) > self.keep:
            del self.items[: len(self.items) - self.keep]
        self.version += 1


def decode_payload(key: str, payload):
    """A decoded JSON payload as the views use it: boundary maps and points become numpy arrays."""
    if key == ARTIFACT_BOUNDARY and isinstance(payload, dict):
        payload = dict(payload)
        payload["pred"] = np.asarray(payload["pred"], dtype=np.uint8)
        payload["confidence"] = np.asarray(payload["confidence"], dtype=np.uint8)
    elif key == ARTIFACT_BOUNDARY_POINTS and isinstance(payload, dict):
        payload = {"points": np.asarray(payload["points"], dtype=np.float64).reshape(-1, 2),
                   "labels": np.asarray(payload["labels"], dtype=np.int64)}
    return payload


def decode(key: str, row: dict) -> Artifact:
    """An artifact of a store row; a row read with `decode=False` (payload still JSON text) is decoded later."""
    payload = row["payload"]
    if isinstance(payload, str):
        return Artifact(int(row["id"]), int(row["step"]), float(row["epoch"]), key=key, raw=payload)
    return Artifact(int(row["id"]), int(row["step"]), float(row["epoch"]), decode_payload(key, payload), key=key)


class ArtifactReader:
    """The poller's artifact reads (see the module docstring). Not thread-safe: the poller's lock serialises it."""

    def __init__(self, rows_per_poll: int = ROWS_PER_POLL) -> None:
        self.rows_per_poll = rows_per_poll
        self.tails: dict[tuple[str, str], int] = {}  # followed pairs -> newest id read (0: none yet)
        self.head = 0  # every followed pair's rows up to this id are read
        self.pending = False  # first reads left for the next poll

    def reset(self) -> None:
        self.tails.clear()
        self.head = 0
        self.pending = False

    def to_do(self, pairs: Iterable[tuple[str, str]]) -> bool:
        """True when a read would change what is followed: wanted pairs not read yet, or followed ones no longer
        wanted (to forget)."""
        pairs = set(pairs)
        return any(pair not in self.tails for pair in pairs) or any(pair not in pairs for pair in self.tails)

    def read(self, store, pairs: Iterable[tuple[str, str]]) -> ArtifactBatch:
        """New rows of the wanted (run id, key) pairs; pairs no longer wanted are forgotten."""
        batch = ArtifactBatch()
        if not hasattr(store, "newest_artifacts"):
            return batch
        wanted = set(pairs)
        for pair in [pair for pair in self.tails if pair not in wanted]:
            del self.tails[pair]  # no view shows it: stop following, free its rows
            batch.forgotten.add(pair)
        top = store.max_artifact_id()
        if not self.tails:
            self.head = top  # nothing followed yet: the first reads below cover everything up to here
        if top > self.head:
            for run_id, key, newest in store.artifact_heads(self.head):
                tail = self.tails.get((run_id, key))
                if tail is not None and newest > tail:
                    self._add(batch, run_id, key, store.newest_artifacts(run_id, key, KEEP.get(key, DEFAULT_KEEP),
                                                                         after_id=tail, decode=False))
            self.head = top
        budget = self.rows_per_poll
        self.pending = False
        for run_id, key in sorted(wanted - set(self.tails)):
            if budget <= 0:
                self.pending = True
                break
            rows = store.newest_artifacts(run_id, key, FIRST_READ.get(key, DEFAULT_FIRST_READ), decode=False)
            self.tails[(run_id, key)] = 0
            self._add(batch, run_id, key, rows)
            budget -= len(rows)
        return batch

    def _add(self, batch: ArtifactBatch, run_id: str, key: str, rows: list[dict]) -> None:
        if rows:
            batch.items.setdefault((run_id, key), []).extend(decode(key, row) for row in rows)
            self.tails[(run_id, key)] = max(self.tails.get((run_id, key), 0), int(rows[-1]["id"]))


def keep_for(key: str) -> int:
    return KEEP.get(key, DEFAULT_KEEP)
