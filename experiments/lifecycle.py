"""Run lifecycle without mxnet: launching sweeps in detached processes, the scheduler loop, stop and resume.

Process model: `mxdash run` creates the runs (status `queued`) and starts a scheduler in its own session (so closing
the terminal or dropping SSH does not stop it). The scheduler starts one worker process per run, up to `parallel` at a
time, each also in its own session with output appended to the run's log file, and records how each worker ended.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.devices import parse_device, visible_gpu_count
from experiments.store import Store, pid_alive, process_start_time

POLL_S = 0.25


def plan_parallelism(n_runs: int, parallel: int | None, per_gpu: int = 1, gpus: int | None = None,
                     cores: int | None = None) -> tuple[int, int]:
    """(runs at a time, OpenMP threads per run). Default: one run per GPU slot when GPUs exist, else as many runs
    as cores (capped by the number of runs), the cores split between them so the CPU is not oversubscribed."""
    cores = cores or os.cpu_count() or 1
    gpus = visible_gpu_count() if gpus is None else gpus
    if parallel is None:
        parallel = gpus * per_gpu if gpus else cores
    parallel = max(1, min(parallel, max(n_runs, 1)))
    return parallel, max(1, cores // parallel)


def spawn_detached(argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a process in its own session (immune to the terminal's SIGHUP), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=os.getcwd())


def scheduler_log(store: Store, name: str) -> Path:
    return store.runs_dir / "_scheduler" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def start_scheduler(store: Store, run_ids: list[str], parallel: int | None, per_gpu: int,
                    name: str) -> subprocess.Popen:
    """Start the detached scheduler for these (queued) runs."""
    argv = [sys.executable, "-m", "experiments.lifecycle", "--runs-dir", str(store.runs_dir.resolve()),
            "--per-gpu", str(per_gpu)]
    if parallel:
        argv += ["--parallel", str(parallel)]
    return spawn_detached(argv + run_ids, scheduler_log(store, name))


class Scheduler:
    """Starts workers for queued runs, at most `parallel` at once, and records how they ended."""

    def __init__(self, store: Store, run_ids: list[str], parallel: int | None = None, per_gpu: int = 1,
                 log=print):
        self.store, self.pending, self.log = store, list(run_ids), log
        self.gpus = visible_gpu_count()
        self.parallel, self.threads = plan_parallelism(len(run_ids), parallel, per_gpu, self.gpus)
        self.free_gpu_slots = [g for g in range(self.gpus) for _ in range(per_gpu)]
        self.active: dict[str, tuple[subprocess.Popen, list[int]]] = {}

    def run(self) -> None:
        self.log(f"scheduling {len(self.pending)} runs, {self.parallel} at a time, {self.threads} threads each")
        while self.pending or self.active:
            self.reap_finished()
            while self.pending and len(self.active) < self.parallel:
                self.start(self.pending.pop(0))
            time.sleep(POLL_S)
        self.log("all runs ended")

    def start(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is None or run["status"] != "queued":  # stopped or deleted while waiting
            return
        kind, ids = parse_device(run["config"]["train"]["device"])
        gpu_ids = []
        if kind in ("auto", "gpu") and not ids and self.free_gpu_slots:  # a sweep: one GPU per run
            gpu_ids = [self.free_gpu_slots.pop(0)]
        argv = [sys.executable, "-m", "experiments.worker", run_id, "--runs-dir", str(self.store.runs_dir),
                "--threads", str(run["config"]["train"].get("threads") or self.threads)]
        if gpu_ids:
            argv += ["--gpus", ",".join(map(str, gpu_ids))]
        proc = spawn_detached(argv, self.store.log_path(run_id))
        # the run now belongs to this worker: only its exit may end it (a resume may re-queue it meanwhile)
        self.store.update_run(run_id, pid=proc.pid, pid_started=process_start_time(proc.pid))
        self.active[run_id] = (proc, gpu_ids)
        self.log(f"started {run_id} (pid {proc.pid}{', gpu ' + str(gpu_ids) if gpu_ids else ''})")

    def reap_finished(self) -> None:
        for run_id, (proc, gpu_ids) in list(self.active.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.active[run_id]
            self.free_gpu_slots.extend(gpu_ids)
            run = self.store.get_run(run_id)
            owned = run is not None and run["pid"] == proc.pid
            if owned and run["status"] in ("queued", "running"):  # the worker died without recording an end
                if code < 0:
                    self.store.finish_run(run_id, "lost", error=f"worker killed by signal {-code}")
                else:
                    self.store.finish_run(run_id, "failed", error=f"worker exited with code {code} "
                                                                  f"(see {self.store.log_path(run_id)})")
            self.log(f"{run_id} ended: {self.store.get_run(run_id)['status'] if run else 'deleted'} (exit {code})")


def request_stop(store: Store, run: dict) -> str:
    """Ask a run to stop cleanly (it checkpoints and becomes `stopped`). Also SIGTERMs a local worker, which the
    worker turns into the same clean stop, so it does not wait for its next flush."""
    status = store.request_stop(run["id"])
    if status == "running" and pid_alive(run.get("pid"), run.get("pid_started")):
        try:
            os.kill(run["pid"], signal.SIGTERM)
        except OSError:
            pass
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.lifecycle", description="the sweep scheduler")
    parser.add_argument("run_ids", nargs="+")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--per-gpu", type=int, default=1)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    Scheduler(Store(args.runs_dir), args.run_ids, args.parallel, args.per_gpu,
              log=lambda line: print(time.strftime("%H:%M:%S"), line, flush=True)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
