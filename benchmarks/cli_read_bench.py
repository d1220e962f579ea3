"""CLI reads on a big store: `mxdash ls`, `ls --json`, `show`, `compare` at 10,000 runs and ~1M metric rows,
each against the same command on a 10-run store (the fixed cost of starting Python and the CLI), interleaved.

The big store comes from the tests' synthetic store builder (tests/conftest_tui.make_store: 100 experiments x 100
runs x ~100 metric rows per run, built in ~6 s). Target: every command answers in < 1 s at 10,000 runs.

    .venv/bin/python benchmarks/cli_read_bench.py [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests")]

COMMANDS = {  # name -> (argv on the big store, argv on the small store)
    "ls": (["ls"], ["ls"]),
    "ls --json": (["ls", "--json"], ["ls", "--json"]),
    "show RUN": (["show", "lr_sweep-13.50"], ["show", "optimizers-1.1"]),
    "compare 3 runs": (["compare", "lr_sweep-13.1", "lr_sweep-13.2", "lr_sweep-13.3"],
                       ["compare", "optimizers-1.1", "optimizers-1.2", "optimizers-1.3"]),
    "compare EXPERIMENT (100 runs)": (["compare", "lr_sweep-13"], ["compare", "optimizers-1"]),
}


def timed(argv: list[str], runs_dir: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "experiments.cli", *argv, "--runs-dir", str(runs_dir)],
                            cwd=PROJECT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed: {result.stderr}")
    return elapsed


def main() -> None:
    from conftest_tui import make_store

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mxdash-cli-bench-") as tmp:
        started = time.perf_counter()
        big = make_store(Path(tmp) / "big", experiments=100, runs_per_experiment=100, points_per_run=100,
                         logs=False)
        built = time.perf_counter() - started
        small = make_store(Path(tmp) / "small", experiments=1, runs_per_experiment=10, points_per_run=100, logs=False)
        import sqlite3

        conn = sqlite3.connect(big / "mxdash.db")
        runs, rows = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics"))
        conn.close()
        print(f"big store: {runs:,} runs, {rows:,} metric rows, built in {built:.1f} s")
        results = {name: ([], []) for name in COMMANDS}
        for rep in range(args.reps):
            for name, (big_argv, small_argv) in COMMANDS.items():
                pair = [(big_argv, big, 0), (small_argv, small, 1)]
                for argv, runs_dir, side in (pair if rep % 2 == 0 else pair[::-1]):
                    results[name][side].append(timed(argv, runs_dir))
        print(f"\n{'command':32s} {'10,000 runs':>12s} {'10 runs':>9s} {'ratio':>6s}")
        for name, (big_times, small_times) in results.items():
            b, s = statistics.median(big_times), statistics.median(small_times)
            print(f"{name:32s} {b * 1000:10.0f} ms {s * 1000:6.0f} ms {b / s:6.2f}")


if __name__ == "__main__":
    main()
