"""Events a user looks for in a run, detected from its records: "diverged at step 10", "hidden0 passed 40% dead at
step 40", "best LR 0.01 (adam)", "val loss rising since epoch 7 (overfitting)".

Pure Python over plain values (no mxnet, no Textual): `mxdash show` lists them and the dashboard marks them on its
plots (each names the metric key it belongs to and where: step, epoch, or for LR events the LR itself).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.metrics import (ARTIFACT_LR_SUGGESTION, COMPLETED, LR, LRFIND_KIND, TRAIN_LOSS, VAL_LOSS,
                                 dead_layer, is_dead_key)

DEAD_THRESHOLD = 0.40  # CS231n: "as much as 40% of your network can be 'dead'" at a too high learning rate
OVERFIT_PATIENCE = 2   # epochs after the best val loss before "rising" is said
OVERFIT_RISE = 0.05    # ... and the last val loss must be this fraction above the best

DIVERGED, DEAD_RELU, BEST_LR, OVERFITTING = "diverged", "dead_relu", "best_lr", "overfitting"


@dataclass(frozen=True)
class Annotation:
    kind: str                   # DIVERGED | DEAD_RELU | BEST_LR | OVERFITTING
    text: str                   # one line, as `mxdash show` prints it
    key: str                    # the metric key whose plot it marks
    step: int | None = None
    epoch: float | None = None
    lr: float | None = None     # BEST_LR: where on the LR axis


def format_lr(lr: float) -> str:
    return f"{lr:.3g}"


def diverged(run: dict) -> list[Annotation]:
    step = run.get("diverged_step")
    if step is None:
        return []
    return [Annotation(DIVERGED, f"diverged at step {step}", TRAIN_LOSS, step=step)]


def dead_relu(series: dict[str, list[tuple]], threshold: float = DEAD_THRESHOLD) -> list[Annotation]:
    """The first probe at which each layer's dead fraction reached `threshold`. series: key -> [(step, epoch,
    value)] in step order."""
    events = []
    for key in sorted(k for k in series if is_dead_key(k)):
        for step, epoch, value in series[key]:
            if value is not None and value >= threshold:
                events.append(Annotation(DEAD_RELU, f"{dead_layer(key)} passed {threshold:.0%} dead at step {step}",
                                         key, step=step, epoch=epoch))
                break
    return events


def overfitting(series: dict[str, list[tuple]], patience: int = OVERFIT_PATIENCE,
                rise: float = OVERFIT_RISE) -> list[Annotation]:
    """Val loss past its minimum for `patience`+ epochs and `rise` above it at the end. Called overfitting when the
    train loss kept falling meanwhile (else the run got worse on both: too high an LR, not overfitting)."""
    val = [(step, epoch, value) for step, epoch, value in series.get(VAL_LOSS, [])
           if value is not None and math.isfinite(value)]
    if len(val) < patience + 1:
        return []
    best = min(range(len(val)), key=lambda i: val[i][2])
    best_step, best_epoch, best_value = val[best]
    if len(val) - 1 - best < patience or not val[-1][2] > best_value * (1 + rise):
        return []
    train = [(step, value) for step, _epoch, value in series.get(TRAIN_LOSS, [])
             if value is not None and math.isfinite(value)]
    at_best = [value for step, value in train if step <= best_step]
    falling = bool(at_best) and train[-1][1] < at_best[-1]
    epoch_text = f"{best_epoch:g}" if best_epoch is not None else f"step {best_step}"
    text = f"val loss rising since epoch {epoch_text}" + (" (overfitting)" if falling else "")
    return [Annotation(OVERFITTING, text, VAL_LOSS, step=best_step, epoch=best_epoch)]


def best_lr(suggestion: dict | None) -> list[Annotation]:
    """The LR range test's suggestion (the ARTIFACT_LR_SUGGESTION payload)."""
    if not suggestion or suggestion.get("lr") is None:
        return []
    lr = suggestion["lr"]
    return [Annotation(BEST_LR, f"best LR {format_lr(lr)} ({suggestion.get('optimizer', '?')})", LR, lr=lr)]


def sweep_best_lr(runs: list[dict]) -> list[Annotation]:
    """Per optimizer, the LR of the completed training run with the lowest final train loss (runs: store rows)."""
    best: dict[str, dict] = {}
    for run in runs:
        loss = run.get("train_loss")
        if run.get("kind", "train") == LRFIND_KIND or run.get("status") != COMPLETED or loss is None \
                or not math.isfinite(loss):
            continue
        name = run.get("optimizer")
        if name not in best or loss < best[name]["train_loss"]:
            best[name] = run
    return [Annotation(BEST_LR, f"best LR {format_lr(run['lr'])} ({name})", LR, lr=run["lr"])
            for name, run in best.items()]


def run_annotations(run: dict, series: dict[str, list[tuple]], suggestion: dict | None = None) -> list[Annotation]:
    """Every event of one run, in the order a user meets them (by step; LR suggestions last)."""
    events = diverged(run) + dead_relu(series) + overfitting(series)
    events.sort(key=lambda a: a.step if a.step is not None else math.inf)
    return events + best_lr(suggestion)


def annotations_for_run(store, run: dict) -> list[Annotation]:
    """Read what the detectors need from the store (experiments/store.py, no mxnet) and run them."""
    keys = [TRAIN_LOSS, VAL_LOSS] + [key for key in store.metric_keys(run["id"]) if is_dead_key(key)]
    series: dict[str, list[tuple]] = {key: [] for key in keys}
    for _id, step, epoch, _wall, key, value in store.metrics_since(run["id"], keys=keys):
        series[key].append((step, epoch, value))
    suggestion = None
    if run.get("kind") == LRFIND_KIND:
        found = store.latest_artifact(run["id"], ARTIFACT_LR_SUGGESTION)
        suggestion = found["payload"] if found else None
    return run_annotations(run, series, suggestion)
