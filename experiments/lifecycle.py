"""Run lifecycle: the scheduler (a warm fork server), and the launch, stop and resume of runs.

Process model: `mxdash run` validates, records a scheduler and the runs (status `queued`, each naming the
scheduler), and starts the scheduler in its own session (closing the terminal or dropping SSH stops nothing). The
scheduler imports the engine (mxnet, gluonnlp, the nets) once, then forks one child per run, up to `parallel` at a
time: each child is a run's worker with its own PID, its own session and its output in the run's log file, so a
crash, an OOM kill or a kill -9 ends that run only, and `mxdash stop` signals that run only. The scheduler records
how each child ended when the child could not (a signal), and readers detect a scheduler that died (its PID and
start time are recorded) and mark its queued runs `lost`, which `mxdash resume EXPERIMENT` finishes.

MXNet and fork (measured here with mxnet 1.9.1, its libgomp, 2 cores):
- Importing mxnet starts no compute: a parent that only imports (no NDArray op, no context) forks children that
  train normally; their parameters are bit-identical to a fresh process started with the same OMP_NUM_THREADS.
- The OpenMP thread count a child computes with is the one the PARENT had at import (libgomp and MXNet read
  OMP_NUM_THREADS then); MXSetNumOMPThreads / omp_set_num_threads in the child set only the calling thread's
  value, not the engine's worker threads (same parameters as the parent's count, not the requested one). So the
  scheduler imports with the run's planned count, and a run planned with another count gets a fresh process
  (fork + exec of experiments.worker), never a forked one with the wrong count.
- Per-run cost: fork to the end of a 3-epoch digits MLP 0.3-0.5 s in a warm child, against 2.3-3.5 s of imports
  for a fresh process (benchmarks/sweep_bench.py measures the sweep).
- The parent must never touch a GPU (CUDA cannot be used across fork): GPUs are counted through NVML before the
  import, and only the children create contexts.
- SQLite connections and flock descriptors must not cross a fork: a child opens its own Store and never uses the
  parent's; the parent forks only outside a write transaction (it is single-threaded).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from experiments.devices import parse_device, visible_gpu_count
from experiments.metrics import ACTIVE, QUEUED
from experiments.store import Store, StoreError, StoreWriteError, pid_alive, process_start_time

POLL_S = 0.5  # the longest the scheduler sleeps; a child's exit wakes it at once (SIGCHLD)
HEARTBEAT_EVERY_S = 2.0
RETRY_AFTER_STORE_ERROR_S = 5.0
STORE_GONE_GRACE_S = 30.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
CHILD_UNBLOCKS = STOP_SIGNALS | {signal.SIGCHLD}  # the scheduler blocks SIGCHLD for itself, never for its workers
# Training yields the CPU to interactive programs (the dashboard, a shell, an editor) when they want it, and takes
# all of it otherwise: with 2 runs training on both cores of this 2-core box the dashboard's tab switches wait for
# the CPU (benchmarks/tui_bench.py alternates sessions at 5 and 0); a sweep alone trains as fast at 5 as at 0
# (benchmarks/sweep_bench.py).
WORKER_NICENESS = 5


def lower_priority(niceness: int) -> None:
    """Run this process (and the workers it forks or spawns: they inherit it) at `niceness` at least; never raises
    the priority of a process that already runs lower."""
    if niceness > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


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


def scheduler_log_path(store: Store, scheduler_id: int) -> Path:
    return store.runs_dir / "_scheduler" / f"scheduler-{scheduler_id}.log"


def new_scheduler(store: Store, threads: int, parallel: int) -> int:
    """Record a scheduler before its runs are made or re-queued (they name it); `launch_scheduler` starts it."""
    return store.create_scheduler(threads, parallel)


def launch_scheduler(store: Store, scheduler_id: int, parallel: int, threads: int,
                     per_gpu: int = 1, niceness: int = WORKER_NICENESS) -> subprocess.Popen:
    """Start the detached scheduler process; its PID is recorded at once (the process records it again)."""
    argv = [sys.executable, "-m", "experiments.lifecycle", "--runs-dir", str(store.runs_dir.resolve()),
            "--scheduler-id", str(scheduler_id), "--parallel", str(parallel), "--threads", str(threads),
            "--per-gpu", str(per_gpu), "--niceness", str(niceness)]
    if os.environ.get("MXDASH_NO_FORK"):  # fallback (and the "before" side of benchmarks/sweep_bench.py)
        argv.append("--cold")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))  # read once, when the scheduler imports mxnet
    proc = spawn_detached(argv, scheduler_log_path(store, scheduler_id), env)
    try:
        store.scheduler_started(scheduler_id, proc.pid, process_start_time(proc.pid))
    except StoreWriteError:
        pass  # the scheduler records itself too
    return proc


def describe_exit(code: int) -> str:
    """How a process ended, from its wait status: "killed by SIGKILL (kill -9, or the out-of-memory killer)"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {"SIGKILL": " (kill -9, or the out-of-memory killer)", "SIGSEGV": " (a crash in native code)",
                "SIGABRT": " (aborted by native code)", "SIGTERM": " (terminated before it could stop cleanly)"}
        return f"killed by {name}{hint.get(name, '')}"
    return f"exited with code {code}"


# -- the scheduler ------------------------------------------------------------------------------------------------
class Scheduler:
    """Starts workers for this scheduler's queued runs, at most `parallel` at once, and records how they ended.
    `warm`: fork children from this process after importing the engine once (False: a fresh process per run)."""

    def __init__(self, store: Store, scheduler_id: int, parallel: int, threads: int, per_gpu: int = 1,
                 log=print, warm: bool = True):
        self.store, self.scheduler_id, self.log, self.warm = store, scheduler_id, log, warm
        self.parallel, self.threads = max(1, parallel), max(1, threads)
        self.gpus = visible_gpu_count()  # NVML, before the engine import: this process never touches a GPU
        self.free_gpu_slots = [g for g in range(self.gpus) for _ in range(per_gpu)]
        self.active: dict[int, tuple[str, int, list[int]]] = {}  # pid -> (run id, generation, gpu ids)
        self.attempted: set[tuple[str, int]] = set()  # (run, generation) started once: never twice
        self.retry_at = 0.0
        self.last_beat = 0.0
        self.terminating = False
        self.gone_since: float | None = None
        self.last_error: str | None = None

    # -- main loop ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.store.scheduler_started(self.scheduler_id, os.getpid())
        signal.signal(signal.SIGTERM, self._terminate)
        # SIGCHLD stays pending (blocked) so the loop sleeps in sigtimedwait and wakes the moment a worker exits:
        # sleeping a fixed 0.1 s cost a sweep of 28 short runs ~0.7 s of idle slots (14 hand-overs per slot)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        if self.warm:
            self.import_engine()
        self.log(f"scheduler {self.scheduler_id}: {self.parallel} runs at a time, {self.threads} OpenMP threads "
                 f"each, {'forking warm workers' if self.warm else 'a fresh process per run'}")
        while True:
            self.reap_children()
            if self.terminating or self.store_gone():
                break
            self.beat()
            started_any = self.start_queued()
            if not self.active and not started_any and not self.has_queued():
                break
            self.wait_for_a_child()
        while self.active and not self.terminating:  # pragma: no cover - only after a store error mid-queue
            self.reap_children()
            self.wait_for_a_child()
        exit_reason = "stopped by SIGTERM" if self.terminating else None
        self._record(lambda: self.store.scheduler_ended(self.scheduler_id, "dead" if self.terminating else "ended",
                                                         exit_reason))
        self.log(f"scheduler {self.scheduler_id}: {exit_reason or 'all runs ended'}")
        return 0

    def store_gone(self) -> bool:
        """The runs directory was deleted or unmounted under the scheduler: nothing it could start would be
        recorded anywhere, so after a grace period it gives up (its running children go on and end themselves)."""
        if self.store.path.exists():
            self.gone_since = None
            return False
        self.gone_since = self.gone_since or time.monotonic()
        if time.monotonic() - self.gone_since < STORE_GONE_GRACE_S:
            return False
        self.log(f"scheduler {self.scheduler_id}: {self.store.path} is gone; stopping")
        return True

    def wait_for_a_child(self) -> None:
        """Sleep until a worker exits (SIGCHLD) or POLL_S passes (heartbeat, retries after a store error)."""
        timeout = POLL_S
        until_retry = self.retry_at - time.monotonic()
        if until_retry > 0:
            timeout = max(0.01, min(timeout, until_retry))
        signal.sigtimedwait({signal.SIGCHLD}, timeout)

    def _terminate(self, signum, frame) -> None:
        self.terminating = True  # children go on (their own sessions); readers mark the queued runs lost

    def import_engine(self) -> None:
        started = time.perf_counter()
        import mxnet  # noqa: F401
        import gluonnlp  # noqa: F401
        import sklearn.datasets  # noqa: F401

        import experiments.train  # noqa: F401
        import nets
        from experiments.data import sklearn_digits

        sklearn_digits()  # the shipped experiments' data, read once and shared with every child
        experiments.train.versions(), experiments.train.git_commit()  # provenance: once, not per run

        try:
            nets.available()  # imports every net module once, here, instead of in every child
        except Exception as e:  # a broken user module fails only the runs that need it, in their child
            self.log(f"warning: {e}")
        self.log(f"imported the engine in {time.perf_counter() - started:.1f} s "
                 f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_EVERY_S:
            self.last_beat = now
            self._record(lambda: self.store.scheduler_heartbeat(self.scheduler_id))

    def _record(self, write) -> bool:
        """A store write that must not kill the scheduler (disk full): logged, and later writes retried."""
        try:
            write()
            self.last_error = None
            return True
        except StoreError as e:
            if str(e) != self.last_error:  # a full disk for an hour is one line, not 1,800
                self.log(f"store write failed: {e} (retrying every {RETRY_AFTER_STORE_ERROR_S:g} s)")
                self.last_error = str(e)
            self.retry_at = time.monotonic() + RETRY_AFTER_STORE_ERROR_S
            return False

    # -- the queue ----------------------------------------------------------------------------------------------
    def queued_runs(self, limit: int) -> list[dict]:
        rows = self.store.conn.execute(
            "SELECT id, generation, threads, config FROM runs WHERE status = 'queued' AND scheduler_id = ? "
            "ORDER BY created, idx LIMIT ?", (self.scheduler_id, limit + len(self.attempted))).fetchall()
        return [dict(r) for r in rows if (r["id"], r["generation"]) not in self.attempted][:limit]

    def has_queued(self) -> bool:
        try:
            return bool(self.queued_runs(1))
        except Exception:
            return True  # cannot tell (store unreadable right now): keep going, look again

    def start_queued(self) -> bool:
        free = self.parallel - len(self.active)
        if free <= 0 or time.monotonic() < self.retry_at:
            return False
        try:
            runs = self.queued_runs(free)
        except Exception as e:
            self.log(f"store read failed: {e}")
            self.retry_at = time.monotonic() + RETRY_AFTER_STORE_ERROR_S
            return False
        for run in runs:
            self.start(run)
        return bool(runs)

    def start(self, run: dict) -> None:
        import json

        run_id, generation = run["id"], run["generation"]
        config = json.loads(run["config"])
        kind, ids = parse_device(config["train"]["device"])
        gpu_ids = []
        if kind in ("auto", "gpu") and not ids and self.free_gpu_slots:  # a sweep: one GPU slot per run
            gpu_ids = [self.free_gpu_slots.pop(0)]
        threads = run["threads"] or self.threads
        if not self._record(lambda: self.store.update_run(run_id, launched=time.time())):
            self.free_gpu_slots.extend(gpu_ids)
            return
        self.attempted.add((run_id, generation))
        log_path = self.store.log_path(run_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.warm and threads == self.threads:
            pid = fork_worker(self.store.runs_dir, run_id, self.scheduler_id, generation, gpu_ids, log_path)
            how = "forked"
        else:
            pid = spawn_worker(self.store.runs_dir, run_id, self.scheduler_id, generation, gpu_ids, log_path, threads)
            how = f"spawned ({threads} threads)"
        self.active[pid] = (run_id, generation, gpu_ids)
        self.log(f"{how} {run_id} (pid {pid}{', gpu ' + str(gpu_ids) if gpu_ids else ''})")

    def reap_children(self) -> None:
        while self.active:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.active.clear()
                return
            if pid == 0:
                return
            if pid not in self.active:
                continue
            self.child_ended(pid, os.waitstatus_to_exitcode(status))

    def child_ended(self, pid: int, code: int) -> None:
        from experiments.worker import EXIT_STORE_UNAVAILABLE

        run_id, generation, gpu_ids = self.active.pop(pid)
        self.free_gpu_slots.extend(gpu_ids)
        if code == EXIT_STORE_UNAVAILABLE:  # the claim could not be written: the run is still queued, try later
            self.attempted.discard((run_id, generation))
            self.retry_at = time.monotonic() + RETRY_AFTER_STORE_ERROR_S
            self.log(f"{run_id}: the store could not be written; retrying in {RETRY_AFTER_STORE_ERROR_S:g} s")
            return
        try:
            run = self.store.get_run(run_id)
        except Exception:
            run = None
        if run is not None and run["status"] in ACTIVE and run["generation"] == generation and (
                run["status"] == QUEUED or run["pid"] == pid):
            reason = f"worker {describe_exit(code)}" if code != 0 else "worker exited without recording an end"
            last = last_log_line(self.store.log_path(run_id))
            if code != 0 and last:
                reason += f": {last}"
            status = "lost" if code < 0 else "failed"
            self._record(lambda: self.store.end_unclaimed(run_id, generation, pid, status,
                                                          f"{reason} (see {self.store.log_path(run_id)})"))
        try:
            final = self.store.get_run(run_id)
        except Exception:
            final = None
        self.log(f"{run_id} ended: {final['status'] if final else '?'} (exit {code})")


def last_log_line(path: Path, block: int = 4096) -> str | None:
    """The last non-empty line of a run's log: what a crashing worker said last ("Segmentation fault: 11": MXNet's
    own SIGSEGV handler prints it and exits with code 255, so the wait status alone does not show a crash)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - block))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:200] if lines else None


# -- starting a worker ----------------------------------------------------------------------------------------------
def _child_session(log_path: Path) -> None:
    """In a fresh child: its own session (the terminal's SIGHUP and the scheduler's group signals miss it), and
    its output appended to the run's log."""
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def fork_worker(runs_dir: Path, run_id: str, scheduler_id: int, generation: int, gpu_ids: list[int],
                log_path: Path) -> int:
    """Fork a warm child that trains `run_id`; returns its PID. SIGTERM/SIGINT stay blocked across the fork until
    the child's stop handler is in place, so a stop at any moment of the start is a clean stop."""
    from experiments.stop import StopSignal

    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return pid
    code = 1
    try:
        stop = StopSignal().install()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_UNBLOCKS)
        _child_session(log_path)
        from experiments.worker import run_worker

        code = run_worker(str(runs_dir), run_id, scheduler_id, generation, gpu_ids or None, stop)
    except BaseException:
        try:
            traceback.print_exc()
        except Exception:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)  # never run the parent's cleanup (its store connection, atexit handlers) in the child


def spawn_worker(runs_dir: Path, run_id: str, scheduler_id: int, generation: int, gpu_ids: list[int],
                 log_path: Path, threads: int) -> int:
    """A fresh worker process (fork + exec): for a run planned with another thread count than this scheduler's."""
    argv = [sys.executable, "-m", "experiments.worker", run_id, "--runs-dir", str(runs_dir), "--threads",
            str(threads), "--scheduler-id", str(scheduler_id), "--generation", str(generation)]
    if gpu_ids:
        argv += ["--gpus", ",".join(map(str, gpu_ids))]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # inherited across exec; the worker unblocks them
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return pid
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # stop signals stay blocked across exec
        _child_session(log_path)
        os.execve(sys.executable, argv, env)
    finally:
        os._exit(127)


# -- stop -----------------------------------------------------------------------------------------------------------
def request_stop(store: Store, run: dict) -> str:
    """Ask a run to stop cleanly (it checkpoints and becomes `stopped`). Also SIGTERMs a local worker, which the
    worker turns into the same clean stop, so it does not wait for its next flush."""
    status = store.request_stop(run["id"])
    current = store.get_run(run["id"]) or run
    if status == "running" and pid_alive(current.get("pid"), current.get("pid_started")):
        try:
            os.kill(current["pid"], signal.SIGTERM)
        except OSError:
            pass
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.lifecycle", description="the sweep scheduler")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--scheduler-id", type=int, required=True)
    parser.add_argument("--parallel", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--per-gpu", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="a fresh process per run (no fork server)")
    parser.add_argument("--niceness", type=int, default=WORKER_NICENESS, help="run the workers at this niceness")
    args = parser.parse_args(argv)
    lower_priority(args.niceness)  # before any child exists: they all inherit it
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before the engine import (launch_scheduler sets it too)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log = lambda line: print(time.strftime("%H:%M:%S"), line, flush=True)  # noqa: E731
    scheduler = Scheduler(Store(args.runs_dir), args.scheduler_id, args.parallel, args.threads, args.per_gpu,
                          log=log, warm=not args.cold)
    return scheduler.run()


if __name__ == "__main__":
    sys.exit(main())
