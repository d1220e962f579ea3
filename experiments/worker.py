"""Worker process: trains one run. `python -m experiments.worker RUN_ID --runs-dir DIR [--threads N] [--gpus 0,1]`.

Started by the scheduler in its own session with output appended to the run's log file. OMP_NUM_THREADS is set here,
before mxnet is imported (MXNet reads it once, at import; unset it uses half the cores).
A heartbeat thread keeps the run's heartbeat fresh even while the loop is busy (first hybridize, a long validation),
so readers can tell a slow worker from a vanished one.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading


def heartbeat_forever(runs_dir: str, run_id: str, stop: threading.Event, period_s: float = 1.0) -> None:
    from experiments.store import Store

    store = Store(runs_dir)  # its own connection: sqlite connections are not shared across threads here
    while not stop.wait(period_s):
        try:
            store.heartbeat(run_id)
        except Exception as e:  # a missed heartbeat is not fatal; the next one may succeed
            print(f"heartbeat failed: {e}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.worker")
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="OpenMP threads (0 = all cores)")
    parser.add_argument("--gpus", default="", help="GPU ids assigned by the scheduler, e.g. 0,1")
    args = parser.parse_args(argv)

    threads = args.threads or os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(threads)  # must precede `import mxnet`

    from experiments.store import Store
    from experiments.train import execute

    store = Store(args.runs_dir)
    stop = threading.Event()
    beat = threading.Thread(target=heartbeat_forever, args=(args.runs_dir, args.run_id, stop), daemon=True)
    beat.start()
    gpu_ids = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    try:
        status = execute(store, args.run_id, gpu_ids, stop_on_signals=True)
    finally:
        stop.set()
    return 0 if status in ("completed", "stopped", "diverged") else 1


if __name__ == "__main__":
    sys.exit(main())
