"""Decision boundaries of nets on 2-D input (spiral, circles, xor, gaussians; TF Playground's view).

At every probe the net classifies a fixed grid over the input plane: one forward pass of one batch of GRID x GRID
points through its own SymbolBlock (sharing the net's parameters, so the training graph never sees a new batch shape:
with static_shape a shape change re-plans its memory), with argmax and the winning softmax probability computed in the
graph and read with one `.asnumpy()`. The payload format is documented at ARTIFACT_BOUNDARY in experiments/metrics.py.
"""
from __future__ import annotations

import warnings

import mxnet as mx
import numpy as np
from mxnet import gluon

from experiments.metrics import ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS

GRID = 48  # cells per side: 2,304 points, ~1 ms on the playground MLPs (half-block maps are rarely wider than 48)
MARGIN = 0.1  # the plane spans the training points plus 10% of their range on every side
MAX_POINTS = 2000  # training points stored for the overlay


def grid_axes(x_range, y_range, size=(GRID, GRID)) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres: x left to right, y top (high) to bottom, as the payload's rows and columns are ordered."""
    (x_lo, x_hi), (y_lo, y_hi), (nx, ny) = x_range, y_range, size
    xs = x_lo + (np.arange(nx) + 0.5) * (x_hi - x_lo) / nx
    ys = y_hi - (np.arange(ny) + 0.5) * (y_hi - y_lo) / ny
    return xs, ys


def is_planar(info) -> bool:
    return info.kind == "vector" and tuple(info.input_shape) == (2,)


class DecisionBoundary:
    """Build once per run (None unless the input is 2-D); `record(writer, step, epoch, wall)` at every probe."""

    @classmethod
    def for_run(cls, net, data, ctx) -> "DecisionBoundary | None":
        return cls(net, data, ctx) if is_planar(data.info) else None

    def __init__(self, net, data, ctx):
        self.classes = data.info.num_classes
        x, y, _ = next(iter(data.train_batches(0, data.n_train, ctx)))  # every training point, one batch
        points, labels = x.asnumpy(), y.asnumpy().astype(int)
        low, high = points.min(axis=0), points.max(axis=0)
        pad = MARGIN * (high - low)
        self.x_range = [float(low[0] - pad[0]), float(high[0] + pad[0])]
        self.y_range = [float(low[1] - pad[1]), float(high[1] + pad[1])]
        keep = slice(None, MAX_POINTS)
        self.points = {"points": np.round(points[keep], 4).tolist(), "labels": labels[keep].tolist()}
        xs, ys = grid_axes(self.x_range, self.y_range)
        grid_x, grid_y = np.meshgrid(xs, ys)  # row r = ys[r], column c = xs[c]
        self.grid = mx.nd.array(np.c_[grid_x.ravel(), grid_y.ravel()], ctx=ctx)
        data_var = mx.sym.var("data")
        probabilities = mx.sym.softmax(net(data_var), axis=1)
        winner = mx.sym.concat(mx.sym.argmax(probabilities, axis=1), mx.sym.max(probabilities, axis=1), dim=0)
        with warnings.catch_warnings():  # "Cannot decide type for data": the grid batch gives it at first call
            warnings.simplefilter("ignore", UserWarning)
            self.block = gluon.SymbolBlock(winner, data_var, params=net.collect_params())
        self.block.hybridize(static_alloc=True, static_shape=True)
        self.points_recorded = False

    def read(self) -> dict:
        """The payload: predicted class and its probability (percent) on every grid cell. One sync."""
        values = self.block(self.grid).asnumpy()
        n = GRID * GRID
        predicted = values[:n].astype(int).reshape(GRID, GRID)
        confidence = np.round(values[n:] * 100).astype(int).reshape(GRID, GRID)
        return {"classes": self.classes, "x": self.x_range, "y": self.y_range, "size": [GRID, GRID],
                "pred": predicted.tolist(), "confidence": confidence.tolist()}

    def record(self, writer, step: int, epoch: float, wall: float) -> None:
        if not self.points_recorded:
            writer.add_artifact(step, epoch, wall, ARTIFACT_BOUNDARY_POINTS, self.points)
            self.points_recorded = True
        writer.add_artifact(step, epoch, wall, ARTIFACT_BOUNDARY, self.read())
