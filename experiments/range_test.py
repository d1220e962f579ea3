"""The LR range test's training loop: a Run (experiments/train.py) whose Trainer follows an exponential LR schedule.

`train.execute` picks this class for runs of kind `lrfind`, so claiming, provenance, failure handling and the worker
process are the training runs' own; only the loop differs. Settings and rules: experiments/lrfind.py.
"""
from __future__ import annotations

import itertools
import time

import mxnet as mx
from mxnet import gluon

from experiments import lrfind
from experiments.metrics import ARTIFACT_LR_SUGGESTION, LR, LRFIND_KIND, SMOOTHED_LOSS, TRAIN_LOSS
from experiments.train import MetricWriter, Run, optimizer_args


class ExponentialLR(mx.lr_scheduler.LRScheduler):
    """low at update 1, high at update `steps`, times a constant factor per update in between.

    Not one of mx.lr_scheduler's own: FactorScheduler is the only geometric one and it raises "Factor must be no
    more than 1 to make lr reduce" for a growing factor; Poly/Cosine/MultiFactor only decay."""

    def __init__(self, low: float, high: float, steps: int):
        super().__init__(base_lr=low)
        self.low, self.high, self.steps = low, high, steps

    def __call__(self, num_update: int) -> float:
        return lrfind.schedule_lr(num_update, self.low, self.high, self.steps)


class RangeTest(Run):
    """One LR range test: `steps` updates (over as many epochs as that takes) at an exponentially growing LR."""

    def __init__(self, store, run_id, gpu_ids=None, log=None, stop=None):
        super().__init__(store, run_id, gpu_ids, log, stop)
        self.settings = lrfind.check_settings(self.config[LRFIND_KIND])
        self.total_steps = self.settings["steps"]
        self.schedule = ExponentialLR(self.settings["low"], self.settings["high"], self.settings["steps"])
        optimizer = {**self.config["optimizer"], "lr": self.settings["low"]}
        mx_name, mx_args = optimizer_args(optimizer, self.schedule)
        self.trainer = gluon.Trainer(self.net.collect_params(), mx_name, mx_args, kvstore="device")

    def load_checkpoint(self) -> bool:
        return False  # a range test takes seconds: a resumed one starts over, no checkpoint is kept

    def train(self, writer: MetricWriter) -> str:
        """Step until `steps` updates or the stop rule; record lr, loss and smoothed loss of every step, then the
        suggestion (an artifact, and the run row's lr)."""
        settings = self.settings
        curve = lrfind.Curve(settings["smoothing"], settings["stop_factor"])
        self.t_start = time.perf_counter()
        for epoch in itertools.count():
            self.epoch = epoch
            for x, y, valid_length in self.data.train_batches(epoch, self.batch_size, self.data_ctx,
                                                              shuffle_seed=self.seed):
                losses = self.train_step(x, y, valid_length)
                self.step += 1
                # The stop rule needs every step's loss: one sync per step (100 syncs ~ 10 ms on the digits MLP)
                per_sample = mx.nd.concat(*[l.as_in_context(self.ctxs[0]) for l in losses], dim=0)
                loss = float(per_sample.mean().asscalar())
                lr = self.schedule(self.step)  # the LR this update used (the local optimizer's, even on a kvstore)
                blew_up = curve.add(lr, loss)
                epoch_float = self.epoch_float()
                writer.add(self.step, epoch_float, self.wall(), {LR: lr, TRAIN_LOSS: loss,
                                                                 SMOOTHED_LOSS: curve.smoothed[-1]})
                writer.latest.update(step=self.step, epoch=epoch_float, train_loss=loss)
                if self.step >= settings["steps"] or blew_up:
                    return self.finish(writer, curve, stopped_early=blew_up)
                if self.stop.requested or self.stop_requested_in_store(writer):
                    writer.flush()
                    return "stopped"

    def finish(self, writer: MetricWriter, curve: "lrfind.Curve", stopped_early: bool) -> str:
        settings, lrs = self.settings, curve.lrs
        found = lrfind.suggestion(lrs, curve.smoothed, settings["rule"])
        payload = {**found, "optimizer": self.config["optimizer"]["name"], "low": settings["low"],
                   "high": settings["high"], "steps": settings["steps"], "steps_run": self.step,
                   "stopped_early": stopped_early, "stop_lr": lrs[-1], "smoothing": settings["smoothing"],
                   "stop_factor": settings["stop_factor"]}
        writer.add_artifact(self.step, self.epoch_float(), self.wall(), ARTIFACT_LR_SUGGESTION, payload)
        if found["lr"] is not None:
            writer.latest["lr"] = found["lr"]  # for a range test the run row's lr is its suggestion
        writer.flush()
        end = f"stopped at lr {lrs[-1]:.3g} (smoothed loss > {settings['stop_factor']:g}x its best)" \
            if stopped_early else f"reached lr {lrs[-1]:.3g}"
        if found["lr"] is None:
            self.log(f"lrfind: no suggestion ({found['reason']}); {end}")
        else:
            self.log(f"lrfind: suggested lr {found['lr']:.3g} ({lrfind.RULES[found['rule']]}); lowest smoothed "
                     f"loss {found['min_loss']:.4f} at lr {found['min_loss_lr']:.3g}; {end}")
        return "completed"
