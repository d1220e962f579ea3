"""Stores for the lesson views of the dashboard (issue 11): LR range tests, decision boundaries, confusion matrices.

- `make_lesson_store(dir)`: synthetic and deterministic (no mxnet, rows straight into SQLite, timestamps around
  FROZEN_NOW): an `lr_sweep-lrfind-1` experiment of 4 LR range tests (lr and smoothed_loss every step, a suggestion
  each) and a `playground-1` experiment of 4 runs on the spiral (boundary frames at 3 probes, training points, a
  confusion matrix and macro F1 per epoch, net summaries with weights counts). For snapshot tests.
- `real_lesson_store(tmp_path_factory)`: what a user gets from `mxdash run experiments/playground.toml` and
  `mxdash lrfind experiments/lr_sweep.toml` (the real console script, from the project directory), once per session.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest_tui import FROZEN_NOW, run_config
from experiments.store import Store

PROJECT = Path(__file__).resolve().parent.parent
RANGE_TESTS = (("sgd", 0.9), ("momentum", 0.5), ("adam", 0.12), ("rmsprop", 0.02))  # optimizer, smoothed-min LR
PLAYGROUND = ((2, "relu"), (2, "tanh"), (32, "relu"), (32, "tanh"))
GRID = 48


def _summary(total: int) -> dict:
    return {"layers": [{"name": "dense0", "type": "Dense", "output_shape": [10], "params": total}],
            "total_params": total, "trainable_params": total, "input_shape": [2]}


def range_curve(center: float, steps: int = 100) -> tuple[list[float], list[float]]:
    """LRs from 1e-7 to 10 (exponential) and a smoothed loss with its valley at `center`, blowing up after it."""
    lrs = [1e-7 * (1e8) ** (t / (steps - 1)) for t in range(steps)]
    losses = []
    for lr in lrs:
        x = math.log10(lr) - math.log10(center)
        losses.append(2.3 - 0.4 * math.exp(-x * x / 0.8) + (0.0 if x < 0.3 else 2.0 * (x - 0.3) ** 2))
    return lrs, losses


def boundary_frame(width: int, activation: str, step: int) -> dict:
    """A 3-class spiral-like boundary: classes by angle (+ radius), sharper and surer for wider nets."""
    edges = np.linspace(-2.5, 2.5, GRID + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    x, y = np.meshgrid(centres, centres[::-1])  # row 0 is the top: y = hi
    twist = (1.5 if width > 4 else 0.3) * (1 if activation == "tanh" else 0.8) * min(1.0, step / 60)
    angle = np.arctan2(y, x) + twist * np.hypot(x, y)
    pred = (np.floor((angle + np.pi) / (2 * np.pi / 3)).astype(int) % 3)
    sure = 0.4 + 0.6 * np.abs(np.sin(3 * angle / 2))
    confidence = np.rint(100 * (1 / 3 + (2 / 3) * sure * (0.5 if width < 4 else 1.0))).astype(int)
    return {"classes": 3, "x": [-2.5, 2.5], "y": [-2.5, 2.5], "size": [GRID, GRID], "pred": pred.tolist(),
            "confidence": confidence.tolist()}


def spiral_points(n: int = 150) -> dict:
    rng = np.random.default_rng(0)
    points, labels = [], []
    for k in range(n):
        label = k % 3
        r = 0.3 + 2.0 * (k // 3) / (n // 3)
        t = label * 2 * math.pi / 3 + 1.5 * r + 0.1 * rng.standard_normal()
        points.append([round(r * math.cos(t), 4), round(r * math.sin(t), 4)])
        labels.append(label)
    return {"points": points, "labels": labels}


def confusion(epoch: int, width: int) -> dict:
    hit = 40 + 3 * epoch + (10 if width > 4 else 0)
    matrix = [[hit if t == p else (50 - hit // 2) // 2 + t for p in range(3)] for t in range(3)]
    support = [sum(row) for row in matrix]
    predicted = [sum(matrix[t][p] for t in range(3)) for p in range(3)]
    precision = [matrix[c][c] / predicted[c] for c in range(3)]
    recall = [matrix[c][c] / support[c] for c in range(3)]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    return {"classes": 3, "matrix": matrix, "precision": precision, "recall": recall, "f1": f1, "support": support}


def make_lesson_store(runs_dir, now: float = FROZEN_NOW) -> Path:
    runs_dir = Path(runs_dir)
    store = Store(runs_dir, create=True)
    experiments, runs, metrics, artifacts = [], [], [], []
    created = now - 600.0
    experiments.append(("lr_sweep-lrfind-1", "lr_sweep-lrfind", "experiments/lr_sweep.toml", created, "{}", "{}"))
    for idx, (optimizer, center) in enumerate(RANGE_TESTS, start=1):
        run_id = f"lr_sweep-lrfind-1.{idx}"
        config = run_config("lr_sweep", "mlp", optimizer, 1e-7, 0, 5)
        config["lrfind"] = {"low": 1e-7, "high": 10.0, "steps": 100, "stop_factor": 4.0, "smoothing": 0.98,
                            "rule": "minimum"}
        lrs, losses = range_curve(center)
        for step, (lr, loss) in enumerate(zip(lrs, losses), start=1):
            wall = step * 0.01
            metrics += [(run_id, step, 0.0, wall, "lr", lr), (run_id, step, 0.0, wall, "smoothed_loss", loss),
                        (run_id, step, 0.0, wall, "train_loss", loss + 0.05 * math.sin(step))]
        suggestion = {"rule": "minimum", "lr": center / 10, "min_loss_lr": center, "min_loss": min(losses),
                      "steep_lr": center / 3, "reason": "", "optimizer": optimizer, "low": 1e-7, "high": 10.0,
                      "steps": 100, "steps_run": 100, "stopped_early": False, "stop_lr": 10.0, "smoothing": 0.98,
                      "stop_factor": 4.0}
        artifacts.append((run_id, 100, 0.0, 1.0, "lr_suggestion", suggestion))
        runs.append({"id": run_id, "experiment_id": "lr_sweep-lrfind-1", "idx": idx, "status": "completed",
                     "kind": "lrfind", "config": config, "net": "mlp", "dataset": "digits", "optimizer": optimizer,
                     "lr": center / 10, "seed": 0, "device": "cpu", "created": created, "started": created + idx,
                     "ended": created + idx + 1, "heartbeat": created + idx + 1, "step": 100, "epoch": 0.0,
                     "epochs": 5, "train_loss": losses[-1], "summary": _summary(8970)})
    created = now - 300.0
    experiments.append(("playground-1", "playground", "experiments/playground.toml", created, "{}", "{}"))
    for idx, (width, activation) in enumerate(PLAYGROUND, start=1):
        run_id = f"playground-1.{idx}"
        config = run_config("playground", "mlp", "adam", 0.01, 0, 3)
        config["data"] = {"name": "spiral", "n_samples": 1500, "noise": 0.2, "classes": 3, "val_fraction": 0.2,
                          "seed": 0}
        config["net"].update(hidden=[width], activation=activation)
        total = 2 * width + width + width * 3 + 3
        for epoch in (1, 2, 3):
            step = 20 * epoch
            scores = confusion(epoch, width)
            macro = sum(scores["f1"]) / 3
            metrics += [(run_id, step, float(epoch), step * 0.01, "train_loss", 1.1 - 0.2 * epoch),
                        (run_id, step, float(epoch), step * 0.01, "val_loss", 1.2 - 0.2 * epoch),
                        (run_id, step, float(epoch), step * 0.01, "val_acc", 0.5 + 0.1 * epoch),
                        (run_id, step, float(epoch), step * 0.01, "val_macro_f1", macro)]
            if epoch == 1:
                artifacts.append((run_id, step, 1.0, 0.2, "boundary_points", spiral_points()))
            artifacts.append((run_id, step, float(epoch), step * 0.01, "boundary",
                              boundary_frame(width, activation, step)))
            artifacts.append((run_id, step, float(epoch), step * 0.01, "confusion", scores))
        runs.append({"id": run_id, "experiment_id": "playground-1", "idx": idx, "status": "completed",
                     "kind": "train", "config": config, "net": "mlp", "dataset": "spiral", "optimizer": "adam",
                     "lr": 0.01, "seed": 0, "device": "cpu", "created": created, "started": created + idx,
                     "ended": created + idx + 1, "heartbeat": created + idx + 1, "step": 60, "epoch": 3.0,
                     "epochs": 3, "train_loss": 0.5, "val_loss": 0.6, "val_acc": 0.8, "best_val_acc": 0.8,
                     "best_val_loss": 0.6, "summary": _summary(total)})
    with store.write():
        store.conn.executemany("INSERT INTO experiments (id, name, file, created, config, grid) "
                               "VALUES (?, ?, ?, ?, ?, ?)", experiments)
        for row in runs:
            row = {**row, "config": json.dumps(row["config"]), "summary": json.dumps(row["summary"])}
            store.conn.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                               tuple(row.values()))
        store.conn.executemany("INSERT INTO metrics (run_id, step, epoch, wall, key, value) "
                               "VALUES (?, ?, ?, ?, ?, ?)", metrics)
        store.conn.executemany("INSERT INTO artifacts (run_id, step, epoch, wall, key, payload) "
                               "VALUES (?, ?, ?, ?, ?, ?)",
                               [(r, s, e, w, k, json.dumps(p)) for r, s, e, w, k, p in artifacts])
    store.close()
    return runs_dir


# -- the real thing -------------------------------------------------------------------------------------------------
_REAL: dict[str, Path] = {}
MXDASH = Path(sys.executable).with_name("mxdash")


def real_lesson_store(tmp_path_factory) -> Path:
    """`mxdash run experiments/playground.toml` and `mxdash lrfind experiments/lr_sweep.toml` into one runs
    directory, through the real console script from the project directory (as a user types them), once per session:
    ~15 s on 2 cores. Tests that write to it copy it first (conftest_tui.copy_store)."""
    if "lessons" not in _REAL and os.environ.get("MXDASH_TEST_LESSON_STORE"):
        _REAL["lessons"] = Path(os.environ["MXDASH_TEST_LESSON_STORE"])  # a store built before (iterating)
    if "lessons" not in _REAL:
        runs_dir = tmp_path_factory.mktemp("lessons") / "runs"
        for command in (("run", "experiments/playground.toml"), ("lrfind", "experiments/lr_sweep.toml")):
            done = subprocess.run([str(MXDASH), *command, "--runs-dir", str(runs_dir)], cwd=PROJECT,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
        _REAL["lessons"] = runs_dir
    return _REAL["lessons"]
