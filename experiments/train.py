"""The training loop of one run. Runs in a worker process (experiments/worker.py) and writes to the run store.

Lean by design (it must match a bare hand-written Gluon loop): the net is hybridized; the per-step losses are kept as
device arrays and read once every `train.log_every` steps (no per-step sync); the dead-ReLU probe runs every
`train.probe_every` steps; metrics go to the store in batches about once a second.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

import nets
from experiments.boundary import DecisionBoundary
from experiments.confusion import ConfusionMatrix
from experiments import metrics as keys
from experiments.checkpoint import (PARTIAL_SUFFIX, CheckpointError, checkpoint_files, commit_checkpoint,  # noqa: F401
                                    read_checkpoint, remove_partial_files, verify_checkpoint)
from experiments.data import load_dataset
from experiments.devices import contexts
from experiments.metrics import LRFIND_KIND
from experiments.probe import DeadReluProbe
from experiments.stop import StopSignal
from experiments import testhooks
from experiments.store import ClaimRefused, NotOwner, Store, StoreWriteError

FLUSH_EVERY_S = 1.0
# An epoch checkpoint is skipped when the last one is younger than this (the final one never is): a digits epoch
# takes 30 ms and a checkpoint 2.5 ms, 8% of a short run; what a kill can cost is bounded by the interval instead.
CHECKPOINT_MIN_INTERVAL_S = 2.0
HEARTBEAT_EVERY_S = 1.0


# -- optimizer and schedule -------------------------------------------------------------------------------------------
def build_lr_scheduler(schedule: dict, lr: float, steps_per_epoch: int, total_steps: int):
    warmup = schedule.get("warmup_steps", 0)
    name = schedule["name"]
    if name in ("constant", "warmup"):
        if not warmup:
            return None
        # factor 1 = constant after the linear warmup
        return mx.lr_scheduler.FactorScheduler(step=max(total_steps, 1), factor=1.0, base_lr=lr,
                                               warmup_steps=warmup)
    if name == "step":
        steps = [e * steps_per_epoch for e in schedule["step_epochs"]]
        return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=schedule["factor"], base_lr=lr,
                                                    warmup_steps=warmup)
    if name == "cosine":
        return mx.lr_scheduler.CosineScheduler(max_update=max(total_steps, warmup + 1), base_lr=lr,
                                               final_lr=schedule["final_lr"], warmup_steps=warmup)
    raise ValueError(f"unknown schedule {name}")


def optimizer_args(optimizer: dict, lr_scheduler) -> tuple[str, dict]:
    """mxdash optimizer config -> (MXNet optimizer name, its keyword arguments)."""
    name = optimizer["name"]
    args = {"learning_rate": optimizer["lr"], "wd": optimizer["wd"]}
    if optimizer.get("clip_gradient") is not None:
        args["clip_gradient"] = optimizer["clip_gradient"]
    if lr_scheduler is not None:
        args["lr_scheduler"] = lr_scheduler
    mx_name, extra = {
        "sgd": ("sgd", {"momentum": 0.0}),
        "momentum": ("sgd", {"momentum": optimizer.get("momentum")}),
        "nesterov": ("nag", {"momentum": optimizer.get("momentum")}),
        "adam": ("adam", {k: optimizer.get(k) for k in ("beta1", "beta2", "epsilon")}),
        "rmsprop": ("rmsprop", {"gamma1": optimizer.get("rho"), "epsilon": optimizer.get("epsilon"),
                                "centered": optimizer.get("centered")}),
        "adagrad": ("adagrad", {"eps": optimizer.get("epsilon")}),
        "adadelta": ("adadelta", {"rho": optimizer.get("rho"), "epsilon": optimizer.get("epsilon")}),
    }[name]
    return mx_name, {**args, **extra}


def graph_uses_rng(net, takes_valid_length: bool) -> bool:
    """True when the net's graph draws random numbers (dropout, random/sample ops, RNN dropout)."""
    inputs = [mx.sym.var("data")] + ([mx.sym.var("valid_length")] if takes_valid_length else [])
    nodes = json.loads(net(*inputs).tojson())["nodes"]
    return any(node["op"] == "Dropout" or node["op"].startswith(("_random", "_sample"))
               or (node["op"] == "RNN" and float(node.get("attrs", {}).get("p", 0)) > 0) for node in nodes)


# -- provenance -------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def versions() -> dict:
    import gluonnlp

    return {"mxnet": mx.__version__, "numpy": np.__version__, "gluonnlp": gluonnlp.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:  # a `git` subprocess, 2 ms: once per process (the scheduler's, shared by forks)
    project = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None  # not a repository, or no commit yet
    except Exception:
        return None


# -- metrics out ------------------------------------------------------------------------------------------------------
class MetricWriter:
    """Buffers metric rows and writes them with the run's latest values about once a second, as the run's owner
    (`lease`): a write after the run moved on (stopped, re-queued, claimed elsewhere) raises NotOwner."""

    def __init__(self, store: Store, run_id: str, lease: str | None = None):
        self.store, self.run_id, self.lease = store, run_id, lease
        self.rows: list[tuple] = []
        self.artifacts: list[tuple] = []
        self.latest: dict = {}
        self.last_flush = time.monotonic()

    def add(self, step: int, epoch: float, wall: float, values: dict) -> None:
        self.rows.extend((step, epoch, wall, key, value) for key, value in values.items())

    def add_artifact(self, step: int, epoch: float, wall: float, key: str, payload) -> None:
        """A JSON-able record (confusion matrix, boundary grid), written with the next metric batch."""
        self.artifacts.append((step, epoch, wall, key, payload))

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= FLUSH_EVERY_S

    def flush(self) -> None:
        self.store.append_metrics(self.run_id, self.rows, self.latest, lease=self.lease, artifacts=self.artifacts)
        self.rows, self.artifacts, self.latest = [], [], {}
        self.last_flush = time.monotonic()


class LossWindow:
    """Per-sample losses of the steps since the last log line, kept on the device until read (no per-step sync).
    On a stop, the unread part is carried as a (sum, count) into the checkpoint."""

    def __init__(self):
        self.losses: list = []
        self.samples = 0
        self.started = time.perf_counter()
        self.carried_sum, self.carried_count = 0.0, 0

    def carry(self, ctx) -> None:
        if self.losses:
            per_sample = mx.nd.concat(*[l.as_in_context(ctx) for l in self.losses], dim=0)
            self.carried_sum += float(per_sample.sum().asscalar())
            self.carried_count += per_sample.shape[0]
            self.losses = []

    def read(self, ctx, grads: list) -> tuple[float, float]:
        """(mean loss of the window, squared L2 norm of `grads`) with a single sync: a log line costs one
        `.asnumpy()`, not one per number (measured: 2n+1 small ops and two syncs cost 0.7-1 ms a line)."""
        grad_squares = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads)).sum()
        if not self.losses:  # every step of the window was carried into a checkpoint already
            return self.carried_sum / self.carried_count, float(grad_squares.asscalar())
        per_sample = mx.nd.concat(*[l.as_in_context(ctx) for l in self.losses], dim=0)
        sums = mx.nd.concat(per_sample.sum(), grad_squares, dim=0).asnumpy()
        count = self.carried_count + per_sample.shape[0]
        return (self.carried_sum + float(sums[0])) / count, float(sums[1])


# -- the run ----------------------------------------------------------------------------------------------------------
class Run:
    """One training run, from its resolved config. `Run(store, run_id).train()`."""

    def __init__(self, store: Store, run_id: str, gpu_ids: list[int] | None = None, log=None,
                 stop: StopSignal | None = None):
        self.store, self.run_id = store, run_id
        self.log = log or (lambda line: print(line, flush=True))
        row = store.get_run(run_id)
        if row is None:
            raise RuntimeError(f"run {run_id} is not in {store.path} (deleted, or the store was replaced)")
        self.config, self.expected_checkpoint = row["config"], row.get("checkpoint_step")
        train = self.config["train"]
        self.seed, self.batch_size, self.epochs = train["seed"], train["batch_size"], train["epochs"]
        self.log_every, self.probe_every = train["log_every"], train["probe_every"]
        self.ctxs = contexts(train["device"], gpu_ids)
        self.data_ctx = self.ctxs[0] if len(self.ctxs) == 1 else mx.cpu()
        self.dir = store.run_dir(run_id)
        self.stop = stop or StopSignal()
        self.next_stop_check = time.monotonic() + FLUSH_EVERY_S
        self.last_checkpoint = time.monotonic()

        mx.random.seed(self.seed)
        np.random.seed(self.seed)
        self.data = load_dataset(self.config["data"])
        self.steps_per_epoch = self.data.steps_per_epoch(self.batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"train.batch_size {self.batch_size} is larger than the training set "
                             f"({self.data.n_train} samples)")
        self.total_steps = self.steps_per_epoch * self.epochs
        net_params = {k: v for k, v in self.config["net"].items() if k != "name"}
        self.net = nets.build_net(self.config["net"]["name"], net_params, self.data.info)
        self.net.initialize(mx.init.Xavier(), ctx=self.ctxs)
        self.summary = nets.net_summary(self.net, self.data.info, self.ctxs[0])
        self.net.hybridize(static_alloc=True, static_shape=self.data.static_shape)
        self.takes_valid_length = nets.takes_valid_length(self.net)
        self.trainable = [p for p in self.net.collect_params().values() if p.grad_req != "null"]
        self.uses_rng = graph_uses_rng(self.net, self.takes_valid_length)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        scheduler = build_lr_scheduler(self.config["schedule"], self.config["optimizer"]["lr"],
                                       self.steps_per_epoch, self.total_steps)
        mx_name, mx_args = optimizer_args(self.config["optimizer"], scheduler)
        # kvstore 'device' keeps replicas in sync across contexts; kvstore=None silently diverges (FACTS.md)
        self.trainer = gluon.Trainer(self.net.collect_params(), mx_name, mx_args, kvstore="device")
        probe_x, probe_len = self.data.probe_batch(train["probe_batch"], self.ctxs[0])
        self.probe = DeadReluProbe(self.net, probe_x, probe_len if self.takes_valid_length else None)
        self.confusion = ConfusionMatrix(self.data.info.num_classes, self.ctxs[0])  # at every validation
        self.boundary = DecisionBoundary.for_run(self.net, self.data, self.ctxs[0])  # 2-D input only, every probe

        self.step, self.epoch, self.batch_in_epoch, self.wall_offset = 0, 0, 0, 0.0
        self.best = {"best_val_acc": None, "best_val_loss": None}
        self.best_window_loss = None  # for train.diverge_factor
        self.window = LossWindow()

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def checkpoint(self, writer: MetricWriter) -> None:
        """Commit a checkpoint at the current step such that a resume from it re-creates exactly what an
        uninterrupted run records: the partial loss window is carried into it (the uninterrupted run carries it
        too, so both compute the same floats), and every row up to this step is flushed BEFORE the commit (rows
        still buffered when a kill came were lost for good: the resumed run only re-records rows after the
        checkpoint)."""
        self.window.carry(self.ctxs[0])
        writer.flush()
        self.save_checkpoint()
        writer.latest["checkpoint_step"] = self.step
        self.last_checkpoint = time.monotonic()

    def save_checkpoint(self) -> None:
        """Parameters, trainer state (optimizer, scheduler, update count) and loop position, through
        experiments.checkpoint (partial files renamed into place, checksums, checkpoint.json as the atomic
        commit). A failed write (disk full) removes what it wrote and raises."""
        params_tmp = self.dir / f"step{self.step}.params{PARTIAL_SUFFIX}"
        states_tmp = self.dir / f"step{self.step}.states{PARTIAL_SUFFIX}"
        try:
            self.net.save_parameters(str(params_tmp))
            self.trainer.save_states(str(states_tmp))
            commit_checkpoint(self.dir, {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                                         "wall": self.wall(), "best": self.best,
                                         "best_window_loss": self.best_window_loss,
                                         "window": [self.window.carried_sum, self.window.carried_count]},
                              params_tmp, states_tmp)
        except BaseException as e:
            remove_partial_files(self.dir)
            if isinstance(e, (OSError, mx.base.MXNetError)) and _disk_full(self.dir):
                raise StoreWriteError(f"disk full: cannot write the checkpoint of {self.run_id} in {self.dir}",
                                      disk_full=True) from e
            raise

    def load_checkpoint(self) -> bool:
        """Load the run's last checkpoint, verified against its checksums. False when the run has none (a first
        start); CheckpointError when it has one that cannot be used (never a silent restart from step 0)."""
        remove_partial_files(self.dir)
        state = verify_checkpoint(self.dir, self.expected_checkpoint)
        if state is None:
            return False
        self.net.load_parameters(str(self.dir / state["params"]), ctx=self.ctxs)
        self.trainer.load_states(str(self.dir / state["states"]))
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.wall_offset, self.best = state["wall"], state["best"]
        self.best_window_loss = state.get("best_window_loss")
        self.window.carried_sum, self.window.carried_count = state.get("window", (0.0, 0))
        return True

    def wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self.t_start

    # -- the loop ---------------------------------------------------------------------------------------------------
    def forward(self, x, valid_length):
        return self.net(x, valid_length) if self.takes_valid_length else self.net(x)

    def train_step(self, x, y, valid_length) -> list:
        """One update; returns the per-sample losses (device arrays, not read here)."""
        if len(self.ctxs) == 1:
            with autograd.record():
                loss = self.loss_fn(self.forward(x, valid_length), y)
            loss.backward()
            self.trainer.step(self.batch_size)
            return [loss]
        xs = gluon.utils.split_and_load(x, self.ctxs, even_split=False)
        ys = gluon.utils.split_and_load(y, self.ctxs, even_split=False)
        lens = (gluon.utils.split_and_load(valid_length, self.ctxs, even_split=False)
                if valid_length is not None else [None] * len(xs))
        with autograd.record():
            losses = [self.loss_fn(self.forward(xi, li), yi) for xi, yi, li in zip(xs, ys, lens)]
        autograd.backward(losses)
        self.trainer.step(self.batch_size)
        return losses

    def validate(self) -> tuple[float, float]:
        accuracy, loss_metric = mx.metric.Accuracy(), mx.metric.Loss()
        self.confusion.reset()
        for x, y, valid_length in self.data.val_batches(self.batch_size, self.ctxs[0]):
            out = self.forward(x, valid_length)
            accuracy.update(y, out)
            loss_metric.update(None, self.loss_fn(out, y))
            self.confusion.update(y, out)
        return loss_metric.get()[1], accuracy.get()[1]

    def train(self, writer: MetricWriter) -> str:
        """Train to the end (or a stop / divergence). Returns the final status."""
        self.t_start = time.perf_counter()
        stop, window = self.stop, self.window
        if self.epoch >= self.epochs:  # resumed from the final checkpoint: everything is recorded already
            writer.flush()
            return keys.COMPLETED
        first_step = True
        for epoch in range(self.epoch, self.epochs):
            self.epoch = epoch
            if self.uses_rng:
                # dropout masks depend on (seed, epoch) only, so a run resumed from an epoch checkpoint matches an
                # uninterrupted one exactly. A reseed costs ~1.5 ms (4% of a digits-MLP epoch): only nets that draw
                # random numbers pay it, and per step would cost as much as a step
                mx.random.seed(self.seed * 100_003 + epoch)
            # the data order depends on the training seed and the epoch (the split on data.seed only)
            for x, y, valid_length in self.data.train_batches(epoch, self.batch_size, self.data_ctx,
                                                              start=self.batch_in_epoch, shuffle_seed=self.seed):
                window.losses.extend(self.train_step(x, y, valid_length))
                window.samples += self.batch_size
                self.step += 1
                self.batch_in_epoch += 1
                if first_step:
                    writer.latest["first_step_at"] = time.time()
                    first_step = False
                if self.step % self.log_every == 0:
                    status = self.log_window(writer, window)
                    if status:
                        return status
                    window = self.window = LossWindow()
                if self.step % self.probe_every == 0:
                    self.record_probe(writer)
                if stop.requested or self.stop_requested_in_store(writer):
                    self.checkpoint(writer)
                    writer.flush()
                    return keys.STOPPED
            self.batch_in_epoch = 0
            self.epoch = epoch + 1
            window.started += self.end_epoch(writer)  # samples/s counts training time, not validation
        if window.losses or window.carried_count:  # the steps after the last log line
            status = self.log_window(writer, window)
            if status:
                return status
            window = self.window = LossWindow()
        if self.step % self.probe_every:
            self.record_probe(writer)
        self.checkpoint(writer)
        writer.flush()
        return keys.COMPLETED

    def epoch_float(self) -> float:
        return self.step / self.steps_per_epoch

    def log_window(self, writer: MetricWriter, window: "LossWindow") -> str | None:
        losses, samples = window.losses, window.samples
        train_loss, grad_squares = window.read(self.ctxs[0], [p.grad(self.ctxs[0]) for p in self.trainable])
        elapsed = time.perf_counter() - window.started
        if not np.isfinite(train_loss):
            return self.mark_diverged(writer, losses)
        if self.exploded(train_loss):
            return self.mark_diverged(writer, losses, exploded_loss=train_loss)
        # gradient of the mean loss, last step of the window (first replica)
        values = {keys.TRAIN_LOSS: train_loss, keys.LR: self.trainer.learning_rate,
                  keys.GRAD_NORM: float(np.sqrt(grad_squares)) / self.batch_size,
                  keys.SAMPLES_PER_S: samples / max(elapsed, 1e-9)}
        if not np.isfinite(values[keys.GRAD_NORM]):
            return self.mark_diverged(writer, losses)
        wall, epoch = self.wall(), self.epoch_float()
        writer.add(self.step, epoch, wall, values)
        writer.latest.update(step=self.step, epoch=epoch, train_loss=train_loss,
                             samples_per_s=values["samples_per_s"])
        self.log(f"step {self.step:6d} | epoch {epoch:6.2f} | loss {train_loss:.4f} | lr {values[keys.LR]:.3g} | "
                 f"grad {values[keys.GRAD_NORM]:.3g} | {values[keys.SAMPLES_PER_S]:,.0f} samples/s")
        return None

    def exploded(self, train_loss: float) -> bool:
        """Opt-in (train.diverge_factor > 0): the loss rose above factor x its reference: the best window loss so
        far, capped by the chance-level loss ln(classes) (a loss that explodes within the first window has no good
        "best so far" to compare with)."""
        factor = self.config["train"].get("diverge_factor", 0)
        if self.best_window_loss is None or train_loss < self.best_window_loss:
            self.best_window_loss = train_loss
        reference = min(self.best_window_loss, float(np.log(self.data.info.num_classes)))
        return bool(factor) and train_loss > factor * reference

    def mark_diverged(self, writer: MetricWriter, losses: list, exploded_loss: float | None = None) -> str:
        """Record where the run diverged (for NaN/inf: the first step of the window whose loss is not finite) and
        keep everything recorded before it."""
        steps_in_window = len(losses) // len(self.ctxs)
        first_bad, value = self.step, exploded_loss
        for i in range(steps_in_window if exploded_loss is None else 0):
            chunk = losses[i * len(self.ctxs):(i + 1) * len(self.ctxs)]
            if not all(np.isfinite(l.asnumpy()).all() for l in chunk):
                first_bad = self.step - steps_in_window + i + 1
                break
        writer.add(first_bad, first_bad / self.steps_per_epoch, self.wall(),
                   {keys.TRAIN_LOSS: float("nan") if value is None else value})
        writer.latest.update(step=self.step, epoch=self.epoch_float(), diverged_step=first_bad,
                             train_loss=value)
        writer.flush()
        reason = "is not finite" if value is None else (f"exploded to {value:.4g} (> "
                                                        f"{self.config['train']['diverge_factor']:g} x its reference)")
        self.log(f"diverged: loss {reason} at step {first_bad}")
        return keys.DIVERGED

    def record_probe(self, writer: MetricWriter) -> None:
        dead = self.probe.read()
        if dead:
            writer.add(self.step, self.epoch_float(), self.wall(), {keys.dead_key(k): v for k, v in dead.items()})
        if self.boundary is not None:
            self.boundary.record(writer, self.step, self.epoch_float(), self.wall())

    def end_epoch(self, writer: MetricWriter) -> float:
        """Validate, record, checkpoint when due. Returns the seconds it took."""
        started = time.perf_counter()
        val_loss, val_acc = self.validate()
        if self.best["best_val_acc"] is None or val_acc > self.best["best_val_acc"]:
            self.best["best_val_acc"] = val_acc
        if np.isfinite(val_loss) and (self.best["best_val_loss"] is None or val_loss < self.best["best_val_loss"]):
            self.best["best_val_loss"] = val_loss
        writer.add(self.step, float(self.epoch), self.wall(), {keys.VAL_LOSS: val_loss, keys.VAL_ACC: val_acc})
        self.confusion.record(writer, self.step, float(self.epoch), self.wall())
        writer.latest.update(val_loss=val_loss, val_acc=val_acc, epoch=float(self.epoch), **self.best)
        self.log(f"epoch {self.epoch}/{self.epochs} | val loss {val_loss:.4f} | val acc {val_acc:.4f}")
        # the last epoch's checkpoint is the final one, after the steps since the last log line are recorded
        # the loss window is carried at every epoch end, checkpoint or not: a run resumed from any epoch checkpoint
        # then adds exactly the same floats as an uninterrupted one (which skipped that checkpoint by the clock)
        self.window.carry(self.ctxs[0])
        due = self.epoch % self.config["train"]["checkpoint_every"] == 0 and self.epoch < self.epochs
        if due and time.monotonic() - self.last_checkpoint >= CHECKPOINT_MIN_INTERVAL_S:
            self.checkpoint(writer)
        return time.perf_counter() - started

    def flush(self, writer: MetricWriter) -> bool:
        """Write buffered metrics; True when a stop was requested through the store."""
        writer.flush()
        return self.store.stop_requested(self.run_id)

    def stop_requested_in_store(self, writer: MetricWriter) -> bool:
        """About once a second: flush when due, and read the store's stop flag (the only stop a run on another
        machine gets). Timed on its own clock: the flushes before every epoch checkpoint reset the writer's, and
        with sub-second epochs the flag was never read (a stopped run trained to the end)."""
        now = time.monotonic()
        if now < self.next_stop_check:
            return False
        self.next_stop_check = now + FLUSH_EVERY_S
        if writer.due():
            writer.flush()
        return self.store.stop_requested(self.run_id)


def safe_log(line: str) -> None:
    """The worker's log goes to a file: a full disk must not turn a log line into a crash of the run."""
    try:
        print(line, flush=True)
    except OSError:
        pass


def execute(store: Store, run_id: str, gpu_ids: list[int] | None = None, log=None, stop: StopSignal | None = None,
            scheduler_id: int | None = None, generation: int | None = None, heartbeat: bool = False) -> str:
    """Claim a run, train it (resuming from its checkpoint if it has one), and record how it ended; returns the
    run's final status, or `refused` (the claim lost: the run was stopped, re-queued or taken meanwhile),
    `superseded` (the run was taken away while training: nothing more is written) or `store-error` (the claim
    could not be written, e.g. disk full: the scheduler keeps the run queued).
    `stop`: the worker process installs its signal handlers before calling this, so a stop during start-up counts;
    in-process callers (tests, benchmarks) keep their own handlers. `scheduler_id`/`generation`: what the
    scheduler queued the run as (the claim fails if a resume re-queued it since)."""
    log = log or safe_log
    stop = stop or StopSignal()
    testhooks.pause("before-claim", store.run_dir(run_id), run_id)
    try:
        lease = store.claim_run(run_id, os.getpid(), socket.gethostname(), scheduler_id, generation)
    except ClaimRefused as e:
        log(f"not starting {run_id}: {e}")
        return "refused"
    except StoreWriteError as e:
        log(f"cannot claim {run_id}: {e}")
        return "store-error"
    beat = Heartbeat(store.runs_dir, run_id, lease).start() if heartbeat else None
    try:
        return _train_claimed(store, run_id, lease, gpu_ids, log, stop)
    except NotOwner as e:
        log(f"{run_id}: stopped writing: {e}")
        return "superseded"
    except Exception as e:
        detail = traceback.format_exc()
        log(detail)
        plain = isinstance(e, (CheckpointError, StoreWriteError))  # a clear sentence is the whole story
        _record_failure(store, run_id, lease, str(e) if plain else f"{type(e).__name__}: {e}",
                        None if plain else detail, log)
        return keys.FAILED
    finally:
        if beat is not None:
            beat.stop()


def _train_claimed(store: Store, run_id: str, lease: str, gpu_ids, log, stop: StopSignal) -> str:
    testhooks.pause("after-claim", store.run_dir(run_id), run_id)
    run_class = Run
    if store.get_run(run_id).get("kind") == LRFIND_KIND:  # an LR range test: same claim, record and finish
        from experiments.range_test import RangeTest as run_class
    run = run_class(store, run_id, gpu_ids, log, stop)
    resumed = run.load_checkpoint()
    store.delete_metrics_after(run_id, run.step if resumed else -1, lease=lease)
    store.update_run(run_id, lease, summary=run.summary, versions=versions(), git_commit=git_commit(),
                     total_steps=run.total_steps, device=",".join(str(c) for c in run.ctxs),
                     checkpoint_step=run.step if resumed else None)
    log(f"{'resuming' if resumed else 'starting'} {run_id} at step {run.step}: {run.config['net']['name']} on "
        f"{run.config['data']['name']}, {run.config['optimizer']['name']} lr={run.config['optimizer']['lr']}, "
        f"{run.total_steps} steps on {run.ctxs}, {os.environ.get('OMP_NUM_THREADS', '?')} threads")
    writer = MetricWriter(store, run_id, lease)
    testhooks.pause("before-train", store.run_dir(run_id), run_id)
    if stop.requested or store.stop_requested(run_id):  # stopped while starting: no step taken, nothing to save
        status = keys.STOPPED
    else:
        status = run.train(writer)
    store.finish_run(run_id, status, lease)
    log(f"{status} at step {run.step}")
    return status


def _record_failure(store: Store, run_id: str, lease: str, error: str, detail: str | None, log) -> None:
    try:
        store.finish_run(run_id, keys.FAILED, lease, error=error, traceback=detail)
    except (StoreWriteError, NotOwner) as e:  # readers will show it lost, with the store's own reason
        log(f"could not record the failure of {run_id}: {e}")


def _disk_full(path: Path, margin_bytes: int = 1 << 20) -> bool:
    import shutil

    try:
        return shutil.disk_usage(path).free < margin_bytes
    except OSError:
        return False


class Heartbeat:
    """A thread that refreshes the run's heartbeat every second through its own store connection, so readers can
    tell a slow worker (first hybridize, a long validation) from a vanished one. It says the process lives, not
    that the loop advances: `progress_at`, written by the loop's own flushes, says that."""

    def __init__(self, runs_dir, run_id: str, lease: str | None, period_s: float = HEARTBEAT_EVERY_S):
        self.runs_dir, self.run_id, self.lease, self.period_s = runs_dir, run_id, lease, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        store = None  # its own connection (not shared across threads), opened at the first beat: most runs of a
        try:          # small sweep end within a second and never need one
            while not self._stop.wait(self.period_s):
                try:
                    store = store or Store(self.runs_dir)
                    store.heartbeat(self.run_id, self.lease)
                except NotOwner:
                    return
                except Exception as e:  # a missed heartbeat is not fatal; the next one may succeed
                    safe_log(f"heartbeat failed: {e}")
        finally:
            if store is not None:
                store.close()
