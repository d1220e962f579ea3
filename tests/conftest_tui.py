"""Synthetic run stores for the dashboard tests and benchmarks (no mxnet: rows go straight into SQLite).

`make_store(dir, experiments, runs_per_experiment, points_per_run)` writes a deterministic store: fixed timestamps
around FROZEN_NOW, a mix of statuses, resolved configs, net summaries, log files, and metric rows of every kind the
workers write (train_loss, lr, grad_norm, samples_per_s every log step; val_loss, val_acc per epoch; dead/<layer>
every probe step). Import it from test modules (`from conftest_tui import make_store, FROZEN_NOW`).
"""
from __future__ import annotations

import asyncio
import functools
import json
import math
import os
from pathlib import Path

import numpy as np
from textual.worker import WorkerCancelled

from experiments.store import Store

FROZEN_NOW = 1_760_000_000.0  # the injected clock of snapshot tests: ages and durations are stable
OPTIMIZERS = (("sgd", 0.05), ("momentum", 0.05), ("nesterov", 0.05), ("adam", 0.003), ("rmsprop", 0.003))
NETS = ("mlp", "cnn", "lstm")
DEAD_LAYERS = ("dense0", "dense1")
STATUS_CYCLE = ("completed", "completed", "completed", "failed", "diverged", "stopped", "lost", "completed")


def run_config(exp_name: str, net: str, optimizer: str, lr: float, seed: int, epochs: int) -> dict:
    return {
        "experiment": {"name": exp_name, "description": "synthetic"},
        "data": {"name": "digits", "val_fraction": 0.2, "seed": 0},
        "net": {"name": net, "hidden": [64, 64], "activation": "relu"},
        "optimizer": {"name": optimizer, "lr": lr, "wd": 0.0, "clip_gradient": None},
        "train": {"epochs": epochs, "batch_size": 64, "seed": seed, "device": "cpu", "log_every": 10,
                  "probe_every": 50, "probe_batch": 256, "checkpoint_every": 1, "threads": 0},
        "schedule": {"name": "constant", "warmup_steps": 0},
    }


SUMMARY = {
    "layers": [
        {"name": "dense0", "type": "Dense", "output_shape": [64], "params": 4160},
        {"name": "relu0", "type": "Activation", "output_shape": [64], "params": 0},
        {"name": "dense1", "type": "Dense", "output_shape": [64], "params": 4160},
        {"name": "relu1", "type": "Activation", "output_shape": [64], "params": 0},
        {"name": "dense2", "type": "Dense", "output_shape": [10], "params": 650},
    ],
    "total_params": 8970, "trainable_params": 8970, "input_shape": [64],
}
VERSIONS = {"python": "3.11.7", "mxnet": "1.9.1", "numpy": "1.23.5"}


def metric_rows(run_id: str, steps: int, epochs: int, lr: float, seed: int, log_every: int = 1,
                probe_every: int = 50, diverge_at: int | None = None):
    """Metric rows (run_id, step, epoch, wall, key, value) of one synthetic run, as a generator. `wall` is seconds
    since the run started, as the training loop records it."""
    rng = np.random.default_rng(seed)
    logged = np.arange(log_every, steps + 1, log_every)
    decay = 0.3 + 2.0 * np.exp(-logged / max(1.0, steps / (4 + 8 * lr * 100)))
    loss = decay + 0.05 * rng.standard_normal(len(logged))
    if diverge_at is not None:
        loss[logged >= diverge_at] = np.nan
    steps_per_epoch = max(1, steps // epochs)
    for i, step in enumerate(logged.tolist()):
        epoch = step * epochs / steps
        wall = step * 0.01
        value = float(loss[i])
        yield (run_id, step, epoch, wall, "train_loss", None if math.isnan(value) else value)
        yield (run_id, step, epoch, wall, "lr", lr * (0.5 if epoch > epochs / 2 else 1.0))
        yield (run_id, step, epoch, wall, "grad_norm", 1.0 + abs(float(loss[i])))
        yield (run_id, step, epoch, wall, "samples_per_s", 9000.0 + 50 * (i % 7))
        if step % steps_per_epoch == 0:
            yield (run_id, step, epoch, wall, "val_loss", None if math.isnan(value) else value * 1.1)
            yield (run_id, step, epoch, wall, "val_acc", max(0.0, min(1.0, 1.0 - value / 2.5)))
        if step % probe_every == 0:
            for j, layer in enumerate(DEAD_LAYERS):
                yield (run_id, step, epoch, wall, f"dead/{layer}", min(1.0, 0.02 * j + step / steps * lr * 4))


def make_store(runs_dir, experiments: int = 2, runs_per_experiment: int = 5, points_per_run: int = 400,
               running: int = 0, now: float = FROZEN_NOW, logs: bool = True) -> Path:
    """Create a synthetic store in `runs_dir`. `points_per_run` is the approximate metric row count per run;
    `running` runs of the newest experiment are left `running` (the rest of it `queued`/finished)."""
    runs_dir = Path(runs_dir)
    store = Store(runs_dir, create=True)
    conn = store.conn
    per_step = 4.0 + 2.0 / 50
    steps = max(10, int(points_per_run / per_step))
    epochs = 10
    run_rows, exp_rows, metrics = [], [], []
    for e in range(experiments):
        name = ("optimizers", "lr_sweep", "dead_relu", "cnn")[e % 4]
        exp_id = f"{name}-{e // 4 + 1}"
        created = now - (experiments - e) * 3600.0
        exp_rows.append((exp_id, name, f"experiments/{name}.toml", created, json.dumps({}), json.dumps({}), 2, 1))
        newest = e == experiments - 1
        for r in range(runs_per_experiment):
            idx = r + 1
            run_id = f"{exp_id}.{idx}"
            opt, lr = OPTIMIZERS[r % len(OPTIMIZERS)]
            lr = lr * (1 + r // len(OPTIMIZERS))
            net = NETS[e % len(NETS)]
            seed = r
            if newest and r < running:
                status = "running"
            elif newest and running and r >= running:
                status = "queued"
            else:
                status = STATUS_CYCLE[(e * runs_per_experiment + r) % len(STATUS_CYCLE)]
            started = (created + 10 + r) if status not in ("queued", "running") else None
            if status == "running":
                started = now - 30.0 - r  # a live run: started half a minute ago, advancing (not stale)
            frac = {"running": 0.4, "queued": 0.0, "completed": 1.0}.get(status, 0.6)
            done = int(steps * frac)
            ended = (started + done * 0.01 + 1) if status not in ("running", "queued") else None
            diverge_at = int(done * 0.8) if status == "diverged" else None
            last_loss = 0.3 + 2.0 * math.exp(-done / max(1.0, steps / (4 + 8 * lr * 100))) if done else None
            if status == "diverged":
                last_loss = float("nan")
            best_acc = None if not done else max(0.0, min(1.0, 1.0 - (last_loss if last_loss == last_loss else 1.0) / 2.5))
            error = {"failed": "ValueError: synthetic failure", "lost": "worker vanished (killed, out of memory "
                     "or machine restarted)"}.get(status)
            traceback = ("Traceback (most recent call last):\n  File \"experiments/train.py\", line 1, in run\n"
                         "ValueError: synthetic failure") if status == "failed" else None
            config = run_config(name, net, opt, lr, seed, epochs)
            if name == "dead_relu":  # a grid over the activation too
                config["net"]["activation"] = ("relu", "leaky_relu")[r % 2]
            run_rows.append({
                "id": run_id, "experiment_id": exp_id, "idx": idx, "status": status, "config": json.dumps(config),
                "net": net, "dataset": "digits", "optimizer": opt, "lr": lr, "seed": seed, "device": "cpu",
                "created": created, "started": started, "ended": ended,
                "heartbeat": (now - 1.0) if status == "running" else (ended or created),
                "pid": 4242 if status == "running" else None, "host": "synthetic-host",
                "step": done, "epoch": done * epochs / steps, "epochs": epochs, "total_steps": steps,
                "train_loss": None if last_loss is not None and last_loss != last_loss else last_loss,
                "val_loss": None if last_loss is None or last_loss != last_loss else last_loss * 1.1,
                "val_acc": best_acc, "best_val_acc": best_acc,
                "best_val_loss": None if last_loss is None or last_loss != last_loss else last_loss * 1.05,
                "samples_per_s": 9100.0 + r if done else None,
                "error": error, "traceback": traceback, "diverged_step": diverge_at,
                "summary": json.dumps(SUMMARY) if status != "queued" else None,
                "versions": json.dumps(VERSIONS) if status != "queued" else None,
                "git_commit": "0123456789abcdef0123456789abcdef01234567" if status != "queued" else None,
            })
            if done and points_per_run:
                metrics.append(metric_rows(run_id, done, epochs, lr, seed, diverge_at=diverge_at))
            if logs and status != "queued":
                run_dir = runs_dir / run_id
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "log.txt").write_text("".join(
                    f"step {s:6d}  epoch {s / max(1, steps // epochs):5.2f}  loss {2.0 / (1 + s / 50):.4f}\n"
                    for s in range(0, done + 1, max(1, done // 30 or 1))))
    has_progress = "progress_at" in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for row in run_rows:
        if has_progress:  # the schema records when the training loop last advanced
            row["progress_at"] = (now - 1.0) if row["status"] == "running" else row["ended"]
    columns = list(run_rows[0])
    with store.write():
        conn.executemany("INSERT INTO experiments (id, name, file, created, config, grid, parallel, per_gpu) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", exp_rows)
        conn.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [tuple(row[c] for c in columns) for row in run_rows])
        for gen in metrics:
            conn.executemany("INSERT INTO metrics (run_id, step, epoch, wall, key, value) VALUES (?, ?, ?, ?, ?, ?)",
                             gen)
    store.close()
    return runs_dir


def make_app(runs_dir, **kwargs):
    """The dashboard on `runs_dir` with a frozen clock, a fixed machine probe, and no timer polls (tests poll with
    `refresh`)."""
    from tui.app import MxdashApp

    kwargs.setdefault("clock", lambda: FROZEN_NOW)
    kwargs.setdefault("machine_probe", FixedProbe())
    kwargs.setdefault("poll_interval", 30.0)
    return MxdashApp(runs_dir, **kwargs)


def runs_view(app):
    from tui.views.runs import RunsView

    return app.main.query_one(RunsView)


def table_ids(app) -> list[str]:
    return runs_view(app).visible_run_ids()


def rendered(widget, width: int = 100) -> str:
    """Plain text of a Static's content (wide enough not to wrap much)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(widget.render() if not hasattr(widget, "content") else widget.content)
    return console.export_text()


class FixedProbe:
    """A machine probe with constant numbers (snapshot tests)."""

    def __call__(self):
        from tui.machine import GpuStatus, MachineStatus

        return MachineStatus(cpu=37.0, mem_used=6.5 * 1024 ** 3, mem_total=24 * 1024 ** 3,
                             gpus=[GpuStatus(0, "Fake GPU", 81.0, 5.0 * 1024 ** 3, 16.0 * 1024 ** 3)])


def run_async(test):
    """Run an `async def` test with asyncio.run (no pytest-asyncio needed); fixtures still inject by name."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_workers(app) -> None:
    try:
        await app.workers.wait_for_complete()
    except WorkerCancelled:  # a cancelled thread worker still ran to its end; nothing to wait for
        pass


async def settle(pilot, rounds: int = 400) -> None:
    """Wait until the app has polled at least once and caught up with the store, and its workers (plot renders,
    log tail, machine probe) are done (no sleeps)."""
    app = pilot.app
    for _ in range(rounds):
        await wait_workers(app)
        await pilot.pause()
        if not app.busy:
            await wait_workers(app)
            await pilot.pause()
            return
    raise AssertionError("the dashboard did not catch up with the store")


async def refresh(pilot) -> None:
    """Poll now (as after ctrl+r) and wait for the result to be applied."""
    pilot.app.action_refresh()
    await settle(pilot)


# -- stores filled by real training runs (the shipped experiment files, trained by the real engine) -----------------
REAL_EXPERIMENTS = (  # (experiment file, overrides): dead_relu twice, the second with another seed (seed groups)
    ("lr_sweep.toml", ()),
    ("dead_relu.toml", ()),
    ("dead_relu.toml", ("train.seed=1",)),
)
_REAL_STORES: dict[str, Path] = {}


def _train_real_store(runs_dir: str) -> None:
    """Create the REAL_EXPERIMENTS runs in `runs_dir` and train them one after another in this process."""
    from experiments.config import load_experiment
    from experiments.train import execute

    project = Path(__file__).resolve().parent.parent
    store = Store(runs_dir, create=True)
    for file, overrides in REAL_EXPERIMENTS:
        path = project / "experiments" / file
        name, raw, runs = load_experiment(path, list(overrides))
        _, run_ids = store.create_experiment(name, str(path), raw, raw.get("grid", {}), runs)
        for run_id in run_ids:
            execute(store, run_id, log=lambda line: None)
    store.close()


def real_store(tmp_path_factory) -> Path:
    """The REAL_EXPERIMENTS trained once per test session (in a subprocess: the test process never imports
    mxnet), ~10 s on 2 cores. Callers that write to it must copy it first (`copy_store`)."""
    import subprocess
    import sys

    if "real" not in _REAL_STORES and os.environ.get("MXDASH_TEST_REAL_STORE"):
        _REAL_STORES["real"] = Path(os.environ["MXDASH_TEST_REAL_STORE"])  # a store built before (iterating)
    if "real" not in _REAL_STORES:
        runs_dir = tmp_path_factory.mktemp("real-sweeps") / "runs"
        here = Path(__file__).resolve().parent
        code = f"import sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; " \
               f"import conftest_tui; conftest_tui._train_real_store({str(runs_dir)!r})"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=600, cwd=here.parent)
        _REAL_STORES["real"] = runs_dir
    return _REAL_STORES["real"]


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of a store's database (SQLite's online backup), without the run folders."""
    import sqlite3

    target.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(Path(source) / "mxdash.db")
    dst = sqlite3.connect(target / "mxdash.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target
