"""The shipped lr_sweep (28 runs) through `mxdash run`, against a bare hand-written sequential Gluon sweep of the
same grid, back to back in one invocation; prints wall times and ratios, and the per-run start-up overhead.

Sides (each a fresh command, timed from its start to its exit, as a user waits for it; rotated every repetition):
- mxdash:        `mxdash run experiments/lr_sweep.toml` (warm fork-server scheduler; runs two at a time on 2 cores)
- mxdash-cold:   the same with MXDASH_NO_FORK=1: a fresh Python process per run (the process model before issue 8)
- bare:          one Python process, OMP_NUM_THREADS = cores, training the 28 runs one after the other with a loop
                 written by hand (same nets, data, batch size, epochs, optimizers, LRs; the loss read every 10 steps;
                 validation every epoch; a run stops when its loss is not finite or exceeds 10x its reference,
                 as mxdash's diverge_factor = 10 does)
- bare-pool-2:   two such processes (OMP_NUM_THREADS = 1 each) splitting the grid: the floor of a "pool of
                 long-lived workers" design, for comparison with the fork server

Per-run overhead comes from the store's own records: launched (scheduler started the worker) -> started (claim)
-> first_step_at.

    .venv/bin/python benchmarks/sweep_bench.py [--reps 3] [--skip-cold]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SWEEP = PROJECT / "experiments" / "lr_sweep.toml"


# -- the bare sweep (runs in its own process: `sweep_bench.py --bare-part K/N`) ---------------------------------------
def bare_sweep(part: int, parts: int) -> None:
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    sys.path.insert(0, str(PROJECT))
    import nets
    from experiments.config import load_experiment
    from experiments.data import load_dataset
    from experiments.train import build_lr_scheduler, optimizer_args

    _, _, runs = load_experiment(SWEEP)
    for config in runs[part::parts]:
        train = config["train"]
        mx.random.seed(train["seed"])
        np.random.seed(train["seed"])
        data = load_dataset(config["data"])
        net = nets.build_net("mlp", {k: v for k, v in config["net"].items() if k != "name"}, data.info)
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        steps_per_epoch = data.steps_per_epoch(train["batch_size"])
        scheduler = build_lr_scheduler(config["schedule"], config["optimizer"]["lr"], steps_per_epoch,
                                       steps_per_epoch * train["epochs"])
        name, args = optimizer_args(config["optimizer"], scheduler)
        trainer = gluon.Trainer(net.collect_params(), name, args)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        best, step, diverged = None, 0, False
        for epoch in range(train["epochs"]):
            for x, y, _ in data.train_batches(epoch, train["batch_size"], mx.cpu(), shuffle_seed=train["seed"]):
                with autograd.record():
                    loss = loss_fn(net(x), y)
                loss.backward()
                trainer.step(train["batch_size"])
                step += 1
                if step % train["log_every"] == 0:
                    value = float(loss.mean().asscalar())
                    best = value if best is None else min(best, value)
                    if not np.isfinite(value) or value > train["diverge_factor"] * min(best, np.log(10)):
                        diverged = True
                        break
            if diverged:
                break
            accuracy = mx.metric.Accuracy()
            for x, y, _ in data.val_batches(train["batch_size"], mx.cpu()):
                accuracy.update(y, net(x))
        print(config["optimizer"]["name"], config["optimizer"]["lr"], "diverged" if diverged else "done", flush=True)


# -- the benchmark ---------------------------------------------------------------------------------------------------
def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: some runs diverged/failed is still a finished sweep
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def run_mxdash(tmp: Path, cold: bool) -> tuple[float, list[dict]]:
    runs_dir = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(os.environ)
    env.pop("MXDASH_NO_FORK", None)
    if cold:
        env["MXDASH_NO_FORK"] = "1"
    elapsed = timed([sys.executable, "-m", "experiments.cli", "run", str(SWEEP), "--runs-dir", str(runs_dir),
                     "--json"], env)
    conn = sqlite3.connect(runs_dir / "mxdash.db")
    conn.row_factory = sqlite3.Row
    runs = [dict(r) for r in conn.execute("SELECT status, launched, started, first_step_at FROM runs")]
    conn.close()
    return elapsed, runs


def run_bare(parts: int) -> float:
    cores = os.cpu_count() or 1
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // parts)))
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--bare-part", f"{k}/{parts}"], cwd=PROJECT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in range(parts)]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bare sweep failed:\n{err[-2000:]}")
    return time.perf_counter() - started


def overhead(runs: list[dict]) -> dict:
    starts = [r for r in runs if r["launched"] and r["started"] and r["first_step_at"]]
    return {"launch_to_claim": statistics.median(r["started"] - r["launched"] for r in starts),
            "claim_to_first_step": statistics.median(r["first_step_at"] - r["started"] for r in starts),
            "launch_to_first_step": statistics.median(r["first_step_at"] - r["launched"] for r in starts)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--bare-part")
    args = parser.parse_args()
    if args.bare_part:
        part, parts = map(int, args.bare_part.split("/"))
        bare_sweep(part, parts)
        return
    sides = ["mxdash", "bare", "bare-pool-2"] + ([] if args.skip_cold else ["mxdash-cold"])
    times: dict[str, list[float]] = {side: [] for side in sides}
    starts: dict[str, list[dict]] = {"mxdash": [], "mxdash-cold": []}
    with tempfile.TemporaryDirectory(prefix="mxdash-sweep-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for rep in range(args.reps):
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                if side.startswith("mxdash"):
                    elapsed, runs = run_mxdash(tmp, cold=side == "mxdash-cold")
                    starts[side].append(overhead(runs))
                else:
                    elapsed = run_bare(2 if side == "bare-pool-2" else 1)
                times[side].append(elapsed)
                print(f"rep {rep + 1}: {side:12s} {elapsed:6.1f} s", flush=True)
    median = {side: statistics.median(values) for side, values in times.items()}
    print(f"\nlr_sweep (28 runs), {os.cpu_count()} cores, median of {args.reps} interleaved repetitions")
    print(f"{'side':14s} {'wall s':>8s} {'vs bare':>8s}")
    for side in sides:
        print(f"{side:14s} {median[side]:8.1f} {median[side] / median['bare']:8.2f}")
    ratios = [m / b for m, b in zip(times["mxdash"], times["bare"])]
    print(f"\nmxdash / bare per repetition: {', '.join(f'{r:.2f}' for r in ratios)}"
          f" (median {statistics.median(ratios):.2f})")
    for side, records in starts.items():
        if records:
            keys = records[0].keys()
            print(f"{side} per-run start (median of runs, median of reps): " + ", ".join(
                f"{k.replace('_', ' ')} {statistics.median(r[k] for r in records) * 1000:.0f} ms" for k in keys))
    print(json.dumps({"median_s": median, "times": times}))


if __name__ == "__main__":
    main()
