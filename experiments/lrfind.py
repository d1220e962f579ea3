"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`), the parts without mxnet.

One short run per optimizer: the LR grows exponentially from `low` to `high` over `steps` updates, the loss of every
step is smoothed with a debiased EMA, and the test stops early once the smoothed loss exceeds `stop_factor` x its
best (or stops being finite). A rule then reads one LR off the curve of smoothed loss against log LR:

- "minimum" (the default): the LR of the lowest smoothed loss, divided by 10. The EMA (beta 0.98, ~50 steps of memory
  = 4 decades of LR at 100 steps) puts the smoothed minimum well past the raw one, where the LR is already too large;
  a tenth of it lands back on the descending slope. Measured on the digits MLP of experiments/lr_sweep.toml (seeds
  0-4): adam 0.0066-0.024, sgd 0.074-0.16, against the sweep's best 0.01 and 0.1: within the factor of 3
  tests/test_lrfind.py asserts.
- "steep": the LR where the smoothed loss falls fastest against log LR, before its minimum (past it, a curve coming
  down from a blow-up falls steeply too). Same runs: adam 0.021-0.031 (2-3x), sgd 0.42-0.89 (4-9x the sweep's
  best): it misses the factor of 3 for sgd, whose loss plunges only just before it blows up.

This module is pure Python (planning, smoothing, the rules) so the CLI can validate and plan, and the dashboard can
read it, without mxnet; the training loop is experiments/range_test.py.
"""
from __future__ import annotations

import copy
import math

from experiments.metrics import LRFIND_KIND

# fastai's defaults: start 1e-7, end 10, 100 iterations, stop at 4x the best smoothed loss, EMA beta 0.98
DEFAULTS = {"low": 1e-7, "high": 10.0, "steps": 100, "stop_factor": 4.0, "smoothing": 0.98, "rule": "minimum"}
RULES = {
    "minimum": "lowest smoothed loss / 10",
    "steep": "steepest descent of the smoothed loss against log LR",
}
SKIP_START_FRACTION, SKIP_END = 0.1, 5  # as fastai's rules: the first 10% are noise, the last points are blowing up


class LRFindError(ValueError):
    """A bad range-test setting: the message names the option."""


def check_settings(settings: dict) -> dict:
    """Fill in the defaults and validate; returns the full settings."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise LRFindError(f"unknown lrfind setting {unknown[0]} (accepted: {', '.join(DEFAULTS)})")
    full = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    low, high, steps = full["low"], full["high"], full["steps"]
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low < high):
        raise LRFindError(f"--low and --high need 0 < low < high, got low={low!r}, high={high!r}")
    if not isinstance(steps, int) or steps < 10:
        raise LRFindError(f"--steps needs an integer >= 10, got {steps!r}")
    if not full["stop_factor"] > 1:
        raise LRFindError(f"stop_factor needs a number > 1, got {full['stop_factor']!r}")
    if not 0 <= full["smoothing"] < 1:
        raise LRFindError(f"smoothing needs a number in [0, 1), got {full['smoothing']!r}")
    if full["rule"] not in RULES:
        raise LRFindError(f"unknown rule {full['rule']!r} (available: {', '.join(RULES)})")
    full["low"], full["high"] = float(low), float(high)
    return full


def schedule_lr(step: int, low: float, high: float, steps: int) -> float:
    """The LR of update `step` (1-based, as MXNet counts updates): low at step 1, high at step `steps`, a constant
    factor (high / low) ** (1 / (steps - 1)) in between."""
    t = min(max(step - 1, 0), steps - 1)
    return low * (high / low) ** (t / (steps - 1))


def plan_range_tests(runs: list[dict], settings: dict) -> list[dict]:
    """One range test per distinct configuration of the grid with the learning rate (and schedule) set aside: for
    experiments/lr_sweep.toml, one per optimizer. Each is the first such run's config with optimizer.lr = low and an
    `lrfind` section holding the settings."""
    settings = check_settings(settings)
    plans, seen = [], set()
    for run in runs:
        identity = copy.deepcopy(run)
        identity["optimizer"].pop("lr", None)
        identity.pop("schedule", None)
        key = repr(sorted((section, sorted(body.items()) if isinstance(body, dict) else body)
                          for section, body in identity.items()))
        if key in seen:
            continue
        seen.add(key)
        plan = copy.deepcopy(run)
        plan["optimizer"]["lr"] = settings["low"]
        plan["schedule"] = {"name": "constant", "warmup_steps": 0}  # the range test is its own schedule
        plan[LRFIND_KIND] = dict(settings)
        plans.append(plan)
    return plans


# -- the curve and the rules --------------------------------------------------------------------------------------
class Curve:
    """The range test's running state, fed one step at a time: the debiased EMA of the loss (as fastai and
    TensorBoard smooth: s_t = m_t / (1 - beta^t), m_t = beta m_(t-1) + (1 - beta) loss_t) and the stop rule."""

    def __init__(self, beta: float, stop_factor: float):
        self.beta, self.stop_factor = beta, stop_factor
        self.lrs: list[float] = []
        self.smoothed: list[float] = []
        self._mean, self.best = 0.0, math.inf

    def add(self, lr: float, loss: float) -> bool:
        """Record one step; True when the test should stop: the smoothed loss is above stop_factor x its best so
        far, or not finite."""
        self._mean = self.beta * self._mean + (1 - self.beta) * loss
        value = self._mean / (1 - self.beta ** (len(self.smoothed) + 1)) if self.beta else loss
        self.lrs.append(lr)
        self.smoothed.append(value)
        blew_up = not math.isfinite(value) or value > self.stop_factor * self.best
        if math.isfinite(value):
            self.best = min(self.best, value)
        return blew_up


def smooth(losses, beta: float) -> list[float]:
    """The smoothed curve of a whole loss series (see Curve)."""
    curve = Curve(beta, math.inf)
    for loss in losses:
        curve.add(1.0, loss)
    return curve.smoothed


def suggestion(lrs, smoothed, rule: str = DEFAULTS["rule"]) -> dict:
    """Both rules' LRs over the curve (finite points only, the first 10% and the last 5 skipped as fastai does)
    and the chosen one: {"rule", "lr" (None when the curve is too short or never falls), "min_loss_lr",
    "min_loss", "steep_lr", "reason" (why lr is None, else "")}."""
    points = [(lr, loss) for lr, loss in zip(lrs, smoothed) if lr > 0 and math.isfinite(loss)]
    start = int(len(points) * SKIP_START_FRACTION)
    end = max(start, len(points) - SKIP_END)
    points = points[start:end]
    out = {"rule": rule, "lr": None, "min_loss_lr": None, "min_loss": None, "steep_lr": None, "reason": ""}
    if len(points) < 3:
        out["reason"] = f"only {len(points)} usable points on the curve (the loss blew up almost at once)"
        return out
    lowest = min(range(len(points)), key=lambda i: points[i][1])
    out["min_loss_lr"], out["min_loss"] = points[lowest][0], points[lowest][1]
    # the descent that leads to the minimum: past it, a curve coming down from a blow-up falls steeply too
    slopes = [(points[i + 1][1] - points[i][1]) / (math.log10(points[i + 1][0]) - math.log10(points[i][0]))
              for i in range(lowest)]
    if slopes:
        steepest = min(range(len(slopes)), key=slopes.__getitem__)
        if slopes[steepest] < 0:
            out["steep_lr"] = points[steepest][0]
    if points[lowest][1] >= points[0][1]:
        out["reason"] = "the smoothed loss never fell below its start (is the LR used at all?)"
        return out
    out["lr"] = out["min_loss_lr"] / 10 if rule == "minimum" else out["steep_lr"]
    return out
