"""The lr_sweep (28 runs) through `mxdash run --cluster ray` against the local engine, interleaved; wall-time ratio.

    .venv/bin/python benchmarks/cluster_bench.py [--pairs 2] [--address local|auto|HOST:PORT] [--file FILE]

Each side is the real console script from start to final table, in a fresh runs directory, as a user runs it: with
`--address local` the Ray side includes starting (and stopping) a private Ray instance with this machine's cores;
with `--address auto` it joins a cluster started by `ray start`. Both sides plan one OpenMP thread per run on two
cores, so their final losses must be identical: the benchmark checks that too.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def run_sweep(file: Path, runs_dir: Path, ray_address: str | None) -> tuple[float, list]:
    cmd = [str(PROJECT / ".venv" / "bin" / "mxdash"), "run", str(file), "--runs-dir", str(runs_dir), "--json"]
    if ray_address:
        cmd += ["--cluster", "ray", "--address", ray_address]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT)
    wall = time.perf_counter() - start
    if out.returncode not in (0, 1):  # 1: some runs diverged or failed, which the lr_sweep's large LRs may do
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    from experiments.store import Store

    store = Store(runs_dir)
    finals = [(r["status"], r["train_loss"]) for r in store.list_runs()]
    store.close()
    return wall, finals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--address", default="local")
    parser.add_argument("--file", type=Path, default=PROJECT / "experiments" / "lr_sweep.toml")
    args = parser.parse_args()

    walls = {"local": [], "ray": []}
    same = True
    work = Path(tempfile.mkdtemp(prefix="mxdash-cluster-bench-"))
    try:
        for pair in range(args.pairs):
            order = ["local", "ray"] if pair % 2 == 0 else ["ray", "local"]  # interleaved: drift hits both sides
            finals = {}
            for side in order:
                wall, finals[side] = run_sweep(args.file, work / f"{side}-{pair}",
                                               args.address if side == "ray" else None)
                walls[side].append(wall)
                print(f"pair {pair + 1}: {side:5s} {wall:6.1f} s", flush=True)
            same &= finals["local"] == finals["ray"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local, ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
    ratios = [r / l for r, l in zip(walls["ray"], walls["local"])]
    print(f"\n{args.file.name}: local engine median {local:.1f} s, Ray ({args.address}) median {ray:.1f} s")
    print(f"wall-time ratio Ray / local: median {statistics.median(ratios):.2f} "
          f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"final statuses and losses identical on both engines: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
