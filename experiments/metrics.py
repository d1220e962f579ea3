"""Names shared by the engine, the CLI and the dashboard: metric keys, run statuses and their groups.

One module so that no file spells "train_loss" or "queued" on its own. Standard library only: the dashboard
imports it and must never import mxnet.
"""
from __future__ import annotations

import os

# -- metric keys (the `key` column of the metrics table) ---------------------------------------------------------
TRAIN_LOSS = "train_loss"  # mean per-sample loss of the steps since the previous log line
VAL_LOSS = "val_loss"      # once per epoch, on the validation split
VAL_ACC = "val_acc"
LR = "lr"                  # the learning rate the optimizer applied at that step
GRAD_NORM = "grad_norm"
SAMPLES_PER_S = "samples_per_s"
DEAD_PREFIX = "dead/"      # dead/<layer>: fraction of the layer's units that output 0 for every probe sample

VAL_MACRO_F1 = "val_macro_f1"  # once per epoch: mean over classes of the per-class F1 (see ARTIFACT_CONFUSION)
SMOOTHED_LOSS = "smoothed_loss"  # LR range tests, every step: debiased EMA of train_loss (the curve the rule reads)

LOSS_KEYS = (TRAIN_LOSS, VAL_LOSS)

# -- artifact keys (the `key` column of the artifacts table; payloads are JSON) ----------------------------------
# confusion: at every validation. {"classes": C, "matrix": C x C counts, rows = true class, columns = predicted,
#   "precision", "recall", "f1", "support": C values each (0 where undefined: no predictions / no samples)}
ARTIFACT_CONFUSION = "confusion"
# boundary: every probe (train.probe_every steps) of a run on 2-D input. {"classes": C, "x": [lo, hi],
#   "y": [lo, hi], "size": [nx, ny], "pred": ny rows of nx predicted classes, "confidence": same shape, softmax
#   probability of the predicted class in percent (0..100)}. Row 0 is the top (y = hi); cell (r, c) is the centre
#   x = lo + (c + 0.5) * (hi - lo) / nx, y = hi - (r + 0.5) * (hi - lo) / ny. See experiments/boundary.py.
ARTIFACT_BOUNDARY = "boundary"
# boundary_points: once, at the first boundary. {"points": [[x, y], ...] training inputs, "labels": [...]}
ARTIFACT_BOUNDARY_POINTS = "boundary_points"
# lr_suggestion: once, at the end of an LR range test. See experiments/lrfind.py `suggestion`.
ARTIFACT_LR_SUGGESTION = "lr_suggestion"

# -- run kinds (the `kind` column of the runs table) -------------------------------------------------------------
TRAIN_KIND, LRFIND_KIND = "train", "lrfind"
RUN_KINDS = (TRAIN_KIND, LRFIND_KIND)


def dead_key(layer: str) -> str:
    return DEAD_PREFIX + layer


def is_dead_key(key: str) -> bool:
    return key.startswith(DEAD_PREFIX)


def dead_layer(key: str) -> str:
    """`dead/hidden0` -> `hidden0`."""
    return key[len(DEAD_PREFIX):] if is_dead_key(key) else key


# -- run statuses (the `status` column of the runs table) --------------------------------------------------------
QUEUED, RUNNING = "queued", "running"
COMPLETED, DIVERGED, FAILED, STOPPED, LOST = "completed", "diverged", "failed", "stopped", "lost"

ACTIVE = (QUEUED, RUNNING)
FINISHED = (COMPLETED, DIVERGED, FAILED, STOPPED, LOST)
STATUSES = ACTIVE + FINISHED
STOPPABLE = ACTIVE
RESUMABLE = (STOPPED, LOST, FAILED)  # resume continues from the last checkpoint

# Never stored: shown for a `running` run whose worker is alive but has not advanced (no step, no flush from the
# training loop) for STALE_AFTER_S seconds: frozen (SIGSTOP), hung, or swapping. The heartbeat alone cannot tell:
# it comes from a thread that keeps beating while the loop is stuck.
STALE = "stale"
DISPLAY_STATUSES = STATUSES + (STALE,)
STALE_AFTER_S = float(os.environ.get("MXDASH_STALE_S", "60"))


def display_status(run: dict, now: float, stale_after_s: float | None = None) -> str:
    """The status to show for a run row: its stored status, or `stale` for a running run that stopped advancing."""
    status = run.get("status")
    if status != RUNNING:
        return status
    progress = run.get("progress_at") or run.get("started")
    limit = STALE_AFTER_S if stale_after_s is None else stale_after_s
    if progress is not None and now - progress > limit:
        return STALE
    return status
