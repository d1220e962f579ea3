"""The training loop of one run. Runs in a worker process (experiments/worker.py) and writes to the run store.

Lean by design (it must match a bare hand-written Gluon loop): the net is hybridized; the per-step losses are kept as
device arrays and read once every `train.log_every` steps (no per-step sync); the dead-ReLU probe runs every
`train.probe_every` steps; metrics go to the store in batches about once a second.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
import traceback
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

import nets
from experiments.boundary import DecisionBoundary
from experiments.confusion import ConfusionMatrix
from experiments.data import load_dataset
from experiments.devices import contexts
from experiments.metrics import LRFIND_KIND
from experiments.probe import DeadReluProbe
from experiments.store import Store

FLUSH_EVERY_S = 1.0
CHECKPOINT = "checkpoint.json"  # the commit point: names the parameter and trainer-state files of the checkpoint


def read_checkpoint(run_dir: Path) -> dict | None:
    """The loop state of a run's last complete checkpoint (its files under "params" and "states"), or None."""
    meta = run_dir / CHECKPOINT
    return json.loads(meta.read_text()) if meta.exists() else None


def checkpoint_files(run_dir: Path) -> tuple[Path, Path] | None:
    """(parameters, trainer states) of a run's last complete checkpoint, or None."""
    state = read_checkpoint(run_dir)
    return (run_dir / state["params"], run_dir / state["states"]) if state else None


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
def versions() -> dict:
    import gluonnlp

    return {"mxnet": mx.__version__, "numpy": np.__version__, "gluonnlp": gluonnlp.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def git_commit() -> str | None:
    project = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None  # not a repository, or no commit yet
    except Exception:
        return None


# -- metrics out ------------------------------------------------------------------------------------------------------
class MetricWriter:
    """Buffers metric rows and writes them with the run's latest values about once a second."""

    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id
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
        self.store.append_metrics(self.run_id, self.rows, self.latest, self.artifacts)
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
        per_sample = mx.nd.concat(*[l.as_in_context(ctx) for l in self.losses], dim=0)
        grad_squares = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads)).sum()
        sums = mx.nd.concat(per_sample.sum(), grad_squares, dim=0).asnumpy()
        count = self.carried_count + per_sample.shape[0]
        return (self.carried_sum + float(sums[0])) / count, float(sums[1])


# -- the run ----------------------------------------------------------------------------------------------------------
class Run:
    """One training run, from its resolved config. `Run(store, run_id).train()`."""

    def __init__(self, store: Store, run_id: str, gpu_ids: list[int] | None = None, log=None):
        self.store, self.run_id = store, run_id
        self.log = log or (lambda line: print(line, flush=True))
        self.config = store.get_run(run_id)["config"]
        train = self.config["train"]
        self.seed, self.batch_size, self.epochs = train["seed"], train["batch_size"], train["epochs"]
        self.log_every, self.probe_every = train["log_every"], train["probe_every"]
        self.ctxs = contexts(train["device"], gpu_ids)
        self.data_ctx = self.ctxs[0] if len(self.ctxs) == 1 else mx.cpu()
        self.dir = store.run_dir(run_id)
        self.stop_flag = False

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
    def save_checkpoint(self) -> None:
        """Parameters, trainer state (optimizer, scheduler, update count) and loop position. The files are new ones
        named by step; replacing checkpoint.json is the atomic commit, so a kill at any moment leaves the previous
        checkpoint whole. Older files go after the commit."""
        params, states = f"step{self.step}.params", f"step{self.step}.states"
        self.net.save_parameters(str(self.dir / params))
        self.trainer.save_states(str(self.dir / states))
        meta_tmp = self.dir / (CHECKPOINT + ".tmp")
        meta_tmp.write_text(json.dumps({"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                                        "params": params, "states": states, "wall": self.wall(), "best": self.best,
                                        "best_window_loss": self.best_window_loss,
                                        "window": [self.window.carried_sum, self.window.carried_count]}))
        os.replace(meta_tmp, self.dir / CHECKPOINT)
        for old in list(self.dir.glob("step*.params")) + list(self.dir.glob("step*.states")):
            if old.name not in (params, states):
                old.unlink(missing_ok=True)

    def load_checkpoint(self) -> bool:
        state = read_checkpoint(self.dir)
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
        window = self.window
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
                if self.step % self.log_every == 0:
                    status = self.log_window(writer, window)
                    if status:
                        return status
                    window = self.window = LossWindow()
                if self.step % self.probe_every == 0:
                    self.record_probe(writer)
                if self.stop_flag or (writer.due() and self.flush(writer)):
                    window.carry(self.ctxs[0])  # a resumed run logs the same window means as an uninterrupted one
                    self.save_checkpoint()
                    writer.flush()
                    return "stopped"
            self.batch_in_epoch = 0
            self.epoch = epoch + 1
            window.started += self.end_epoch(writer)  # samples/s counts training time, not validation
        if window.losses:  # the steps after the last log line
            status = self.log_window(writer, window)
            if status:
                return status
        if self.step % self.probe_every:
            self.record_probe(writer)
        self.save_checkpoint()
        writer.flush()
        return "completed"

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
        values = {"train_loss": train_loss, "lr": self.trainer.learning_rate,
                  "grad_norm": float(np.sqrt(grad_squares)) / self.batch_size,
                  "samples_per_s": samples / max(elapsed, 1e-9)}
        if not np.isfinite(values["grad_norm"]):
            return self.mark_diverged(writer, losses)
        wall, epoch = self.wall(), self.epoch_float()
        writer.add(self.step, epoch, wall, values)
        writer.latest.update(step=self.step, epoch=epoch, train_loss=train_loss,
                             samples_per_s=values["samples_per_s"])
        self.log(f"step {self.step:6d} | epoch {epoch:6.2f} | loss {train_loss:.4f} | lr {values['lr']:.3g} | "
                 f"grad {values['grad_norm']:.3g} | {values['samples_per_s']:,.0f} samples/s")
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
                   {"train_loss": float("nan") if value is None else value})
        writer.latest.update(step=self.step, epoch=self.epoch_float(), diverged_step=first_bad,
                             train_loss=value)
        writer.flush()
        reason = "is not finite" if value is None else (f"exploded to {value:.4g} (> "
                                                        f"{self.config['train']['diverge_factor']:g} x its reference)")
        self.log(f"diverged: loss {reason} at step {first_bad}")
        return "diverged"

    def record_probe(self, writer: MetricWriter) -> None:
        dead = self.probe.read()
        if dead:
            writer.add(self.step, self.epoch_float(), self.wall(), {f"dead/{k}": v for k, v in dead.items()})
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
        writer.add(self.step, float(self.epoch), self.wall(), {"val_loss": val_loss, "val_acc": val_acc})
        self.confusion.record(writer, self.step, float(self.epoch), self.wall())
        writer.latest.update(val_loss=val_loss, val_acc=val_acc, epoch=float(self.epoch), **self.best)
        self.log(f"epoch {self.epoch}/{self.epochs} | val loss {val_loss:.4f} | val acc {val_acc:.4f}")
        if self.epoch % self.config["train"]["checkpoint_every"] == 0 or self.epoch == self.epochs:
            self.save_checkpoint()
        return time.perf_counter() - started

    def flush(self, writer: MetricWriter) -> bool:
        """Write buffered metrics; True when a stop was requested through the store."""
        writer.flush()
        return self.store.stop_requested(self.run_id)


def execute(store: Store, run_id: str, gpu_ids: list[int] | None = None, log=None,
            stop_on_signals: bool = False) -> str:
    """Claim a run, train it (resuming from its checkpoint if it has one), and record how it ended.
    `stop_on_signals`: the worker process owns SIGTERM/SIGINT and turns them into a clean stop; in-process callers
    (tests, benchmarks) keep their own handlers."""
    log = log or (lambda line: print(line, flush=True))
    store.claim_run(run_id, os.getpid(), socket.gethostname())
    try:
        run_class = Run
        if store.get_run(run_id).get("kind") == LRFIND_KIND:  # an LR range test: same claim, record and finish
            from experiments.range_test import RangeTest as run_class
        run = run_class(store, run_id, gpu_ids, log)
        resumed = run.load_checkpoint()
        store.delete_metrics_after(run_id, run.step if resumed else -1)
        store.update_run(run_id, summary=run.summary, versions=versions(), git_commit=git_commit(),
                         total_steps=run.total_steps, device=",".join(str(c) for c in run.ctxs))
        log(f"{'resuming' if resumed else 'starting'} {run_id} at step {run.step}: {run.config['net']['name']} on "
            f"{run.config['data']['name']}, {run.config['optimizer']['name']} lr={run.config['optimizer']['lr']}, "
            f"{run.total_steps} steps on {run.ctxs}")
        writer = MetricWriter(store, run_id)
        if stop_on_signals:
            install_stop_handler(run)
        status = run.train(writer)
        store.finish_run(run_id, status)
        log(f"{status} at step {run.step}")
        return status
    except Exception as e:
        log(traceback.format_exc())
        store.finish_run(run_id, "failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return "failed"


def install_stop_handler(run: Run) -> None:
    """SIGTERM / SIGINT stop cleanly: the loop checkpoints and marks the run stopped at the next step."""
    import signal

    def request_stop(signum, frame):
        run.stop_flag = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
