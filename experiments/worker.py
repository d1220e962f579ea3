"""Worker: trains one run, in a process of its own.

Two ways in, same code: the scheduler forks a warm child that calls `run_worker` (experiments/lifecycle.py: the
engine is imported once per sweep), or, for a run planned with a thread count other than the scheduler's, it starts
`python -m experiments.worker RUN_ID --runs-dir DIR --threads N [--scheduler-id S --generation G] [--gpus 0,1]`
with OMP_NUM_THREADS set before mxnet is imported (MXNet reads it once, at import; unset it uses half the cores).

Exit codes tell the scheduler what it must record: 0 the run recorded its own end (or was not ours to start),
1 it failed and recorded it, EXIT_STORE_UNAVAILABLE the claim could not be written (disk full): the run stays
queued and the scheduler tries again later.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

EXIT_STORE_UNAVAILABLE = 75  # EX_TEMPFAIL
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def fatal_signals_to_log() -> None:
    """A crash in native code prints the Python traceback into the run's log and kills the process with the
    signal. MXNet installs its own SIGSEGV handler that calls exit() from inside the handler: measured here, a
    SIGSEGV'd worker then hung for ever in a futex (the atexit handlers wait for engine threads), holding its
    scheduler slot. So: default action first, then faulthandler (which re-raises through the previous handler)."""
    import faulthandler

    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    faulthandler.enable(file=sys.stderr, all_threads=True)


def run_worker(runs_dir: str, run_id: str, scheduler_id: int | None, generation: int | None,
               gpu_ids: list[int] | None, stop) -> int:
    """Train one run in this process (already in its own session, output going to the run's log)."""
    from experiments.store import Store
    from experiments.train import execute  # imports mxnet, which installs its SIGSEGV handler

    fatal_signals_to_log()
    store = Store(runs_dir)
    status = execute(store, run_id, gpu_ids, stop=stop, scheduler_id=scheduler_id, generation=generation,
                     heartbeat=True)
    if status == "store-error":
        return EXIT_STORE_UNAVAILABLE
    return 1 if status == "failed" else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.worker")
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="OpenMP threads (0 = all cores)")
    parser.add_argument("--gpus", default="", help="GPU ids assigned by the scheduler, e.g. 0,1")
    parser.add_argument("--scheduler-id", type=int)
    parser.add_argument("--generation", type=int)
    args = parser.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads or os.cpu_count() or 1)  # must precede `import mxnet`
    from experiments.stop import StopSignal

    # The scheduler starts this process with SIGTERM/SIGINT blocked; the handler is in place before they are let
    # through, so a stop sent at any moment of the start (3 s of imports) ends the run `stopped`, never killed.
    stop = StopSignal().install()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    gpu_ids = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    return run_worker(args.runs_dir, args.run_id, args.scheduler_id, args.generation, gpu_ids, stop)


if __name__ == "__main__":
    sys.exit(main())
