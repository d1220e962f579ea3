"""Runs on a Ray cluster: `mxdash run FILE --cluster ray [--address auto|HOST:PORT|local]`.

Process model (the same shape as the local engine): `mxdash run` checks Ray and the cluster, creates the runs
(`queued`) in the head's store, and starts a detached cluster scheduler (`python -m experiments.cluster`) in its own
session, so closing the terminal does not end the sweep. The scheduler is the Ray driver:

- it starts one `StoreWriter` actor pinned to its own node (the head: the machine holding the runs directory);
- it submits each run as a Ray task asking for what the run's device needs (CPU cores = the run's OpenMP threads,
  GPUs); Ray places and queues the tasks;
- on whichever node a task lands, `train_on_node` runs the ordinary training loop (`experiments.train.execute`)
  against a `RemoteStore`, which forwards every Store method call by name to the writer actor (metric batches,
  status, heartbeats, stop requests) together with the new log lines and any new checkpoint, so the head's one
  SQLite store stays the single source of truth and `mxdash ls/show/export` and the dashboard work unchanged, live;
- when a task dies (node gone, worker crashed, OOM-killed) Ray's error names why: the scheduler marks the run `lost`
  with that reason. `mxdash resume` requeues it and it may land on any node.

Checkpoints live in the head's run folder: the training loop writes them to a scratch folder on its node, and the
next Store call ships the files (parameters, trainer state, then checkpoint.json, the commit point) to the head,
which commits them the same atomic way; a resumed task first fetches them from the head. No shared filesystem is
needed, `mxdash gc/export` see one folder per run as for local runs, and a node dying loses at most the work since
the last checkpoint that reached the head.

Ownership: each attempt gets a token (`cluster_task`); the writer refuses calls from an attempt that no longer owns
its run (a task Ray declared dead but whose process still runs, an attempt superseded by a resume).

OpenMP threads: MXNet (libgomp) reads OMP_NUM_THREADS once, when mxnet is imported, and Ray reuses worker
processes. Measured (Ray 2.60, mxnet 1.9.1): a plain task with num_cpus=2 in a worker that first ran a num_cpus=1
task sees OMP_NUM_THREADS=2 in its environment but libgomp's omp_get_max_threads() stays 1. So each task carries
OMP_NUM_THREADS in its runtime_env: Ray keys worker processes by runtime_env, a run gets a worker whose process
started with its thread count (reused by later runs with the same count: mxnet is imported once per worker).

This module imports Ray only inside functions: without the `cluster` extra, `--cluster ray` is one clear line.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.devices import parse_device, visible_gpu_count
from experiments.metrics import ACTIVE, LOST, QUEUED, RUNNING
from experiments.store import RUN_COLUMNS, Store

INSTALL_HINT = 'pip install -e ".[cpu,cluster]"  (on every node; or: pip install "ray==2.60.0")'
from experiments.checkpoint import CHECKPOINT  # noqa: E402  (stdlib only: the head's writer never imports mxnet)
HEARTBEAT_S = 1.0
CLAIM_METHODS = ("claim_run",)  # Store methods whose pid/host facts must come from the node, not the head
LOCAL = "local"


class ClusterError(Exception):
    """A cluster problem the user can fix (Ray missing, no cluster at the address): one line, exit code 2."""


class StaleAttempt(Exception):
    """A task's write for a run it no longer owns."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


# -- addresses and resources ------------------------------------------------------------------------------------------
def cluster_label(address: str) -> str:
    """What the `cluster` column records: `ray:local` or `ray:HOST:PORT` (resume goes back there)."""
    return f"ray:{address}"


def label_address(label: str | None) -> str | None:
    return label.split(":", 1)[1] if label and label.startswith("ray:") else None


def resolve_address(address: str | None) -> str:
    """`local`, or the GCS HOST:PORT that `auto` / RAY_ADDRESS / HOST:PORT mean. Raises ClusterError."""
    import_ray()  # ClusterError without the extra
    address = address or "auto"
    if address == LOCAL:
        return LOCAL
    if address.startswith("ray://"):
        raise ClusterError(f"--address {address}: Ray Client addresses are not supported; run mxdash on a node of "
                           "the cluster (the machine that keeps the runs directory) with --address auto or HOST:PORT")
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:  # what ray.init will dial: RAY_ADDRESS / `ray start`'s record for auto, loopback rewritten to this node's IP
        resolved = canonicalize_bootstrap_address_or_die(address)
    except (ConnectionError, ValueError) as e:
        raise ClusterError(f"no Ray cluster found for --address {address} ({first_sentence(str(e))}); start one "
                           "with `ray start --head --port 6379`, or use --address local") from None
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError) as e:
        loopback = address.split(":")[0] in ("127.0.0.1", "localhost")
        raise ClusterError(f"no Ray cluster answers at {resolved} (--address {address}): {e}"
                           + ("; Ray dials this machine's IP for a loopback address, so start the head without "
                              "--node-ip-address 127.0.0.1" if loopback else
                              "; start one with `ray start --head --port 6379`, or use --address local")) from None
    return resolved


def connect(address: str, num_cpus: int | None = None):
    """ray.init for the driver: a private instance for `local`, else join the cluster at `address`."""
    import logging

    ray = import_ray()
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR, namespace="mxdash")
    if address != LOCAL:
        use_cluster_token(address)
    if address == LOCAL:
        # address="local": a new instance even when another cluster runs here (ray.init() alone would join the
        # one `ray start` recorded)
        return ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=visible_gpu_count(),
                        include_dashboard=False, **quiet)
    return ray.init(address=address, **quiet)


def use_cluster_token(address: str) -> None:
    """Ray 2.60 turns token authentication on for a cluster started with `ray start --head` on a machine where
    ~/.ray/auth_token exists (any earlier local `ray.init()` writes one), but a driver joining it sends no token
    unless RAY_AUTH_MODE=token: measured, ray.init(address=...) then retries ~20 s and fails "InvalidAuthToken".
    Sending a token to a cluster without authentication breaks it the other way (actors "cancelled before they
    started"). So ask the cluster: one GCS call without a token answers at once, or says it wants one."""
    if os.environ.get("RAY_AUTH_MODE") is not None:  # the user chose
        return
    import logging

    from ray._private.authentication import authentication_token_setup as setup
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address).get_all_node_info(timeout=10)
        return  # no authentication
    except AuthenticationError:
        pass
    logging.getLogger(setup.__name__).setLevel(logging.ERROR)  # its "token auth is enabled" notice, on every run
    if not setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False):
        raise ClusterError(f"the Ray cluster at {address} wants an authentication token and this machine has none: "
                           "copy the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN)")


def cluster_resources(ray) -> dict:
    """CPUs and GPUs of the alive nodes: totals and per node (a run must fit on one node)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes]
    gpus = [int(n["Resources"].get("GPU", 0)) for n in nodes]
    return {"nodes": len(nodes), "cpus": sum(cpus), "gpus": sum(gpus),
            "node_cpus": max(cpus, default=0), "node_gpus": max(gpus, default=0),
            "min_node_cpus": min([c for c in cpus if c] or [1])}


def local_resources() -> dict:
    cpus, gpus = os.cpu_count() or 1, visible_gpu_count()
    return {"nodes": 1, "cpus": cpus, "gpus": gpus, "node_cpus": cpus, "node_gpus": gpus, "min_node_cpus": cpus}


def probe(address: str | None) -> tuple[str, dict]:
    """Before anything is created: Ray importable, the cluster reachable; returns (address, resources)."""
    resolved = resolve_address(address)
    if resolved == LOCAL:
        return resolved, local_resources()
    ray = import_ray()
    try:
        connect(resolved)
        return resolved, cluster_resources(ray)
    except ClusterError:
        raise
    except Exception as e:
        raise ClusterError(f"cannot join the Ray cluster at {resolved}: {first_sentence(str(e))}") from None
    finally:
        ray.shutdown()


def plan_threads(n_runs: int, resources: dict) -> int:
    """OpenMP threads (= CPUs asked of Ray) per CPU run: the cluster's cores split over the runs, at most one node."""
    return max(1, min(resources["min_node_cpus"], resources["cpus"] // max(n_runs, 1)))


def planned_parallel(n_runs: int, resources: dict, parallel: int | None = None) -> int:
    """CPU runs the cluster trains at once (what `mxdash run` reports and the experiment records)."""
    fits = max(1, resources["cpus"] // plan_threads(n_runs, resources))
    return max(1, min(n_runs, parallel or fits, fits))


def run_request(config: dict, threads: int, per_gpu: int, resources: dict) -> dict:
    """What a run asks Ray for: {"num_cpus", "num_gpus", "gpu_ids"} (gpu_ids as MXNet sees them inside the task,
    where Ray's CUDA_VISIBLE_DEVICES shows only the assigned GPUs)."""
    kind, ids = parse_device(config["train"]["device"])
    if kind == "auto":
        kind = "gpu" if resources["gpus"] else "cpu"
    if kind == "cpu":
        return {"num_cpus": threads, "num_gpus": 0, "gpu_ids": None}
    n = len(ids) if ids else 1
    return {"num_cpus": threads, "num_gpus": n if n > 1 or per_gpu <= 1 else 1 / per_gpu,
            "gpu_ids": list(range(n))}


def infeasible(request: dict, resources: dict) -> str | None:
    if request["num_cpus"] > resources["node_cpus"]:
        return f"needs {request['num_cpus']} CPUs on one node; the largest node has {resources['node_cpus']}"
    if request["num_gpus"] and request["num_gpus"] > resources["node_gpus"]:
        return (f"needs {request['num_gpus']:g} GPU(s) on one node; the cluster's nodes have at most "
                f"{resources['node_gpus']}")
    return None


def check_feasible(runs: list[dict], resources: dict, per_gpu: int = 1) -> None:
    """Refuse (before anything is created) runs no node of the cluster can hold: Ray would queue them for ever."""
    threads = plan_threads(len(runs), resources)
    for i, config in enumerate(runs, start=1):
        request = run_request(config, config["train"].get("threads") or threads, per_gpu, resources)
        reason = infeasible(request, resources)
        if reason:
            raise ClusterError(f"run {i} (device {config['train']['device']!r}) {reason}")


# -- the scheduler (Ray driver), detached -----------------------------------------------------------------------------
def start_cluster_scheduler(store: Store, scheduler_id: int, address: str, parallel: int | None, per_gpu: int):
    """Start the detached cluster scheduler for the runs queued for `scheduler_id` (a record of the `schedulers`
    table, like the local engine's: a reader that finds it dead marks its queued runs lost); returns its Popen."""
    from experiments.lifecycle import scheduler_log_path, spawn_detached
    from experiments.store import StoreWriteError, process_start_time

    argv = [sys.executable, "-m", "experiments.cluster", "--runs-dir", str(store.runs_dir.resolve()),
            "--scheduler-id", str(scheduler_id), "--address", address, "--per-gpu", str(per_gpu)]
    if parallel:
        argv += ["--parallel", str(parallel)]
    proc = spawn_detached(argv, scheduler_log_path(store, scheduler_id))
    try:
        store.scheduler_started(scheduler_id, proc.pid, process_start_time(proc.pid))
    except StoreWriteError:
        pass  # the scheduler records itself too
    return proc


class ClusterScheduler:
    """Submits the runs as Ray tasks, waits for them and records how each ended."""

    def __init__(self, store: Store, scheduler_id: int, address: str, parallel: int | None = None,
                 per_gpu: int = 1, log=print):
        self.store, self.scheduler_id, self.address, self.log = store, scheduler_id, address, log
        self.parallel, self.per_gpu = parallel, per_gpu
        self.label = cluster_label(address)
        self.run_ids = [r["id"] for r in store.conn.execute(
            "SELECT id FROM runs WHERE status = 'queued' AND scheduler_id = ? ORDER BY created, idx",
            (scheduler_id,)).fetchall()]
        self.last_beat = 0.0

    def beat(self) -> None:
        if time.monotonic() - self.last_beat >= HEARTBEAT_S * 2:
            self.last_beat = time.monotonic()
            try:
                self.store.scheduler_heartbeat(self.scheduler_id)
            except Exception as e:  # a full disk must not end the sweep's driver
                self.log(f"scheduler heartbeat failed: {e}")

    def run(self) -> None:
        self.store.scheduler_started(self.scheduler_id, os.getpid())
        try:
            self._run()
        except BaseException as e:
            self.store.scheduler_ended(self.scheduler_id, "dead", f"{type(e).__name__}: {first_sentence(str(e))}")
            raise
        self.store.scheduler_ended(self.scheduler_id, "ended")

    def _run(self) -> None:
        ray = import_ray()
        try:
            connect(self.address)
        except Exception as e:
            for run_id in self.run_ids:
                self.end_unstarted(run_id, "failed", f"cannot join the Ray cluster at {self.address}: "
                                                     f"{first_sentence(str(e))}")
            raise
        try:
            self.schedule(ray)
        finally:
            ray.shutdown()

    def schedule(self, ray) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        resources = cluster_resources(ray)
        head = ray.get_runtime_context().get_node_id()
        # the writer lives where the runs directory is: this process's node (0 CPUs: it never blocks a run)
        writer = ray.remote(StoreWriter).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False),
            name=f"mxdash-writer-{uuid.uuid4().hex[:8]}").remote(str(self.store.runs_dir.resolve()))
        task = ray.remote(train_on_node)
        threads = plan_threads(len(self.run_ids), resources)
        self.log(f"ray {self.address}: {resources['nodes']} nodes, {resources['cpus']} CPUs, {resources['gpus']} "
                 f"GPUs; {len(self.run_ids)} runs, {threads} threads each")
        pending, inflight = list(self.run_ids), {}
        while pending or inflight:
            self.beat()
            while pending and (not self.parallel or len(inflight) < self.parallel):
                run_id = pending.pop(0)
                submitted = self.submit(ray, task, writer, run_id, threads, resources)
                if submitted:
                    inflight[submitted[0]] = (run_id, submitted[1])
            if not inflight:
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                run_id, token = inflight.pop(ref)
                self.record_end(ray, ref, run_id, token)
        self.log("all runs ended")

    def submit(self, ray, task, writer, run_id: str, threads: int, resources: dict):
        run = self.store.get_run(run_id)
        if run is None or run["status"] != QUEUED or run.get("scheduler_id") != self.scheduler_id:
            return None  # stopped, deleted or re-queued for another scheduler while waiting
        threads = run.get("threads") or run["config"]["train"].get("threads") or threads
        request = run_request(run["config"], threads, self.per_gpu, resources)
        reason = infeasible(request, resources)
        if reason:
            self.end_unstarted(run_id, "failed", f"no node of the Ray cluster can run it: {reason}")
            return None
        token = uuid.uuid4().hex[:12]
        fields = {"cluster": self.label, "cluster_task": token, "node": None}
        if "threads" in RUN_COLUMNS and not run.get("threads"):  # issue 8's column: a resume keeps the plan
            fields["threads"] = threads
        self.store.update_run(run_id, **fields)
        ref = task.options(num_cpus=request["num_cpus"], num_gpus=request["num_gpus"], max_retries=0,
                           name=f"mxdash {run_id}",
                           runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}}).remote(
            writer, run_id, token, request["gpu_ids"], threads, self.scheduler_id, run["generation"])
        self.log(f"submitted {run_id} ({request['num_cpus']} CPU, {request['num_gpus']:g} GPU, attempt {token})")
        return ref, token

    def record_end(self, ray, ref, run_id: str, token: str) -> None:
        from ray.exceptions import RayError, RayTaskError

        outcome, reason, died = "", None, False
        try:
            outcome = ray.get(ref)
        except RayError as e:
            reason = ray_reason(e)
            # RayTaskError: our code raised (its cause says what); anything else: the task, its worker or its node
            # died, or the head's writer did
            died = not isinstance(e, RayTaskError) or isinstance(getattr(e, "cause", None), RayError)
        run = self.store.get_run(run_id)
        if run is None:
            self.log(f"{run_id} ended: deleted")
            return
        owned = run.get("cluster_task") == token
        if reason and owned and (run["status"] in ACTIVE or (died and run["status"] == LOST)):
            where = f" on node {run['node']}" if run.get("node") else ""
            self.store.finish_run(run_id, LOST if died else "failed", error=f"{'lost' if died else 'failed'}"
                                                                            f"{where}: {reason}")
            self.store.update_run(run_id, cluster_task=None)  # late writes of that attempt are refused
        elif owned and run["status"] in ACTIVE:
            self.store.finish_run(run_id, "failed", error=f"the Ray task ended ({outcome}) without recording an end")
        self.log(f"{run_id} ended: {self.store.get_run(run_id)['status']} ({reason or outcome})")

    def end_unstarted(self, run_id: str, status: str, error: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None and run["status"] == QUEUED:
            self.store.finish_run(run_id, status, error=error)


def ray_reason(error: Exception) -> str:
    """Ray's own words for why a task died, without the advice paragraphs: `NodeDiedError: Task failed because the
    node it was running on is dead or unavailable. Node IP: 10.0.0.2, node ID: 6f3c...`."""
    cause = getattr(error, "cause", None)  # RayTaskError: the exception raised in the task (its str is a traceback)
    error = cause if isinstance(cause, Exception) else error
    name = type(error).__name__
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
    for cut in (" This can happen", " Check python-core-worker", " To see", " Refer to the documentation",
                " Set the environment variable"):
        text = text.split(cut)[0]
    return f"{name}: {text[:300]}"


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text.split(". ")[0][:200]


# -- the head side: one writer actor per scheduler --------------------------------------------------------------------
class StoreWriter:
    """Ray actor on the head: applies the Store calls of remote runs to the head's store, appends their log lines to
    the run's log file and commits their checkpoints into the run's folder."""

    def __init__(self, runs_dir: str):
        self.store = Store(runs_dir)

    def call(self, run_id: str, attempt: str, name: str, args: tuple, kwargs: dict, log_lines: list[str],
             checkpoint: dict | None, node_facts: dict | None = None):
        self.check_owner(run_id, attempt)
        if log_lines:
            self.append_log(run_id, log_lines)
        if checkpoint:
            self.commit_checkpoint(run_id, checkpoint)
        if name.startswith("_") or not callable(getattr(Store, name, None)):
            raise AttributeError(f"Store has no method {name!r}")
        result = getattr(self.store, name)(*args, **kwargs)
        if name in CLAIM_METHODS and node_facts:
            # the claim measured the PID's start time on the head; on another machine that PID is someone else
            self.store.update_run(run_id, **node_facts)
        return result

    def check_owner(self, run_id: str, attempt: str) -> None:
        run = self.store.get_run(run_id)
        if run is None or run["cluster_task"] != attempt:
            raise StaleAttempt(f"{run_id}: attempt {attempt} no longer owns the run "
                               f"(now {run['cluster_task'] if run else 'gone'})")

    def append_log(self, run_id: str, lines: list[str]) -> None:
        path = self.store.log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as log:
            log.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))

    def commit_checkpoint(self, run_id: str, files: dict) -> None:
        """Data files first, checkpoint.json last (os.replace: the atomic commit), then older files go, exactly as
        the training loop does it on its own disk."""
        run_dir = self.store.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if name != CHECKPOINT:
                (run_dir / name).write_bytes(data)
        tmp = run_dir / (CHECKPOINT + ".tmp")
        tmp.write_bytes(files[CHECKPOINT])
        os.replace(tmp, run_dir / CHECKPOINT)
        for old in list(run_dir.glob("step*.params")) + list(run_dir.glob("step*.states")):
            if old.name not in files:
                old.unlink(missing_ok=True)

    def fetch_checkpoint(self, run_id: str, attempt: str) -> dict | None:
        """The run's last committed checkpoint on the head, as {file name: bytes}, for a task about to resume it."""
        self.check_owner(run_id, attempt)
        run_dir = self.store.run_dir(run_id)
        meta = run_dir / CHECKPOINT
        if not meta.exists():
            return None
        state = json.loads(meta.read_text())
        return {CHECKPOINT: meta.read_bytes(), **{state[k]: (run_dir / state[k]).read_bytes()
                                                  for k in ("params", "states")}}


# -- the node side ----------------------------------------------------------------------------------------------------
class RemoteStore:
    """Stands in for `experiments.store.Store` inside a Ray task. Any Store method called on it is forwarded by name
    to the head's StoreWriter, with the log lines written since the last call and, when the training loop committed
    a new checkpoint in the scratch folder, its files. `run_dir` is the node-local scratch folder."""

    def __init__(self, writer, run_id: str, attempt: str, scratch: Path):
        import ray

        self._ray, self._writer, self._run_id, self._attempt = ray, writer, run_id, attempt
        self._scratch = scratch
        self.runs_dir = scratch.parent
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._trainer_thread = threading.current_thread()
        self._getter = ThreadPoolExecutor(1, thread_name_prefix="mxdash-store")
        self._shipped: bytes | None = None
        self._node_facts: dict | None = None
        self.last_call = 0.0

    def run_dir(self, run_id: str) -> Path:
        assert run_id == self._run_id, run_id
        return self._scratch

    def log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "log.txt"

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def forward(*args, **kwargs):
            return self._call(name, args, kwargs)

        forward.__name__ = name
        return forward

    def _call(self, name: str, args: tuple, kwargs: dict):
        # checkpoints only from the training thread: it is the one writing them, so none is half-written now
        checkpoint = self._new_checkpoint() if threading.current_thread() is self._trainer_thread else None
        with self._lock:
            lines, self._lines = self._lines, []
        facts = self._node_facts_for(args) if name in CLAIM_METHODS else None
        self.last_call = time.monotonic()
        result = self._get(self._writer.call.remote(self._run_id, self._attempt, name, args, kwargs, lines,
                                                    checkpoint, facts))
        if checkpoint:
            self._shipped = checkpoint[CHECKPOINT]
        return result

    def _get(self, ref):
        """ray.get, but never from the task's main thread: there Ray counts the task as blocked and lends its CPUs
        to another task (measured: a third run started on two 1-CPU nodes). From another thread it does not."""
        if threading.current_thread() is not self._trainer_thread:
            return self._ray.get(ref)
        return self._getter.submit(self._ray.get, ref).result()

    def _node_facts_for(self, args: tuple) -> dict:
        from experiments.store import process_start_time

        pid = next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), os.getpid())
        return {"pid_started": process_start_time(pid), "host": socket.gethostname()}

    def _new_checkpoint(self) -> dict | None:
        meta = self._scratch / CHECKPOINT
        try:
            text = meta.read_bytes()
        except FileNotFoundError:
            return None
        if text == self._shipped:
            return None
        state = json.loads(text)
        return {CHECKPOINT: text, **{state[k]: (self._scratch / state[k]).read_bytes() for k in ("params", "states")}}

    def receive_checkpoint(self) -> int | None:
        """Copy the head's checkpoint of this run into the scratch folder (a resume). Returns its step."""
        files = self._get(self._writer.fetch_checkpoint.remote(self._run_id, self._attempt))
        if not files:
            return None
        for name, data in files.items():
            (self._scratch / name).write_bytes(data)
        self._shipped = files[CHECKPOINT]
        return json.loads(files[CHECKPOINT])["step"]

    def flush_log(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            self._get(self._writer.append_log.remote(self._run_id, lines))

    def close(self) -> None:
        self._getter.shutdown(wait=True)  # Ray reuses this process for later runs: leave no thread behind


def omp_threads() -> int | None:
    """The OpenMP thread count this process really uses (libgomp's, which MXNet's operators and oneDNN follow)."""
    try:
        return ctypes.CDLL("libgomp.so.1").omp_get_max_threads()
    except OSError:
        return None


def train_on_node(writer, run_id: str, attempt: str, gpu_ids: list[int] | None, threads: int,
                  scheduler_id: int | None = None, generation: int | None = None) -> str:
    """The Ray task: train one run on whatever node Ray chose, reporting to the head through `writer`."""
    import ray

    node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:8]}"
    scratch = Path(tempfile.mkdtemp(prefix=f"mxdash-{run_id}-"))
    store = RemoteStore(writer, run_id, attempt, scratch)
    stop = threading.Event()
    try:
        run = store.get_run(run_id)
        if run is None or run["status"] != QUEUED:
            return f"skipped ({run['status'] if run else 'deleted'})"
        step = store.receive_checkpoint()
        store.update_run(run_id, node=node)
        measured = omp_threads()
        store.log(f"ray: node {node}, pid {os.getpid()}, OpenMP threads {measured} (planned {threads})"
                  + (f", checkpoint of step {step} fetched from the head" if step is not None else ""))
        beat = threading.Thread(target=heartbeat_while_quiet, args=(store, run_id, stop), daemon=True)
        beat.start()
        from experiments.train import execute  # after OMP_NUM_THREADS (runtime_env) and in the task's process

        # the claim is the same compare-and-set as a local worker's: it fails if the run was stopped or re-queued
        return execute(store, run_id, gpu_ids, log=store.log, scheduler_id=scheduler_id, generation=generation)
    finally:
        stop.set()
        try:
            store.flush_log()
        finally:
            store.close()
            shutil.rmtree(scratch, ignore_errors=True)


def heartbeat_while_quiet(store: RemoteStore, run_id: str, stop: threading.Event) -> None:
    """Keep the run's heartbeat fresh while the loop is busy (first hybridize, a long validation); skipped when the
    loop itself called the head within the period (its metric batches refresh the heartbeat already)."""
    while not stop.wait(HEARTBEAT_S):
        if time.monotonic() - store.last_call < HEARTBEAT_S:
            continue
        try:
            store.heartbeat(run_id)
        except Exception as e:  # a missed heartbeat is not fatal; the next one may succeed
            store.log(f"heartbeat failed: {e}")


# -- stop and resume from the CLI -------------------------------------------------------------------------------------
def is_cluster_run(run: dict) -> bool:
    return bool(run.get("cluster"))


def request_stop(store: Store, run: dict) -> str:
    """Stop a run, local or on Ray. A cluster run only gets the store's stop request (it checkpoints and stops at its
    next flush): no signal, since its PID is a Ray worker process (SIGTERM would kill the worker: `lost`)."""
    if is_cluster_run(run):
        return store.request_stop(run["id"])
    from experiments.lifecycle import request_stop as local_stop

    return local_stop(store, run)


def plan_resume(runs: list[dict], cluster: str | None, address: str | None) -> dict[str | None, list[str]]:
    """Which engine resumes which runs: {None: local run ids, resolved Ray address: run ids}. By default a run goes
    back where it last ran; `--cluster ray [--address A]` moves runs to Ray, `--cluster local` brings them home.
    Probes every Ray target first (ClusterError before anything changes)."""
    plan: dict[str | None, list[str]] = {}
    for run in runs:
        if cluster == "ray":
            target = address or label_address(run.get("cluster")) or "auto"
        elif cluster == "local":
            target = None
        else:
            target = label_address(run.get("cluster"))
        plan.setdefault(target, []).append(run["id"])
    return {(probe(target)[0] if target else None): ids for target, ids in plan.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.cluster", description="the Ray sweep scheduler")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--scheduler-id", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--per-gpu", type=int, default=1)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ClusterScheduler(Store(args.runs_dir), args.scheduler_id, args.address, args.parallel, args.per_gpu,
                     log=lambda line: print(time.strftime("%H:%M:%S"), line, flush=True)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
