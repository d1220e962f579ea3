"""Confusion matrix and per-class precision / recall / F1 of a validation pass, on the device, read with one sync.

`update(labels, outputs)` per validation batch keeps the batch's labels and argmax on the device (one op); `read`
concatenates them, counts one_hot(true)^T . one_hot(predicted), a (C x C) matrix product (O(N C) memory; a one_hot
over C*C combined indices would need O(N C^2)), derives precision, recall and F1 in the graph too and reads matrix and
scores with a single `.asnumpy()`. Counting per batch instead cost 5 ops a batch: +48% on a digits-MLP validation
(2.8 ms), against +24% (0.7 ms) this way. mx.metric has F1 for binary
problems only and no confusion matrix, and its metrics read every batch on the host.
"""
from __future__ import annotations

import mxnet as mx

from experiments.metrics import ARTIFACT_CONFUSION, VAL_MACRO_F1


class ConfusionMatrix:
    def __init__(self, num_classes: int, ctx):
        self.classes, self.ctx = int(num_classes), ctx
        self.labels, self.predicted = [], []

    def reset(self) -> None:
        self.labels, self.predicted = [], []

    def update(self, labels, outputs) -> None:
        """labels: (N,) true classes; outputs: (N, C) scores. Nothing is read here."""
        self.labels.append(labels.as_in_context(self.ctx))
        self.predicted.append(mx.nd.argmax(outputs, axis=1).as_in_context(self.ctx))

    def read(self) -> dict | None:
        """The matrix and the per-class scores (0 where undefined, as scikit-learn's zero_division default), or None
        before any update. One sync."""
        if not self.labels:
            return None
        c = self.classes
        true = mx.nd.one_hot(mx.nd.concat(*self.labels, dim=0), c)
        predicted = mx.nd.one_hot(mx.nd.concat(*self.predicted, dim=0), c)
        counts = mx.nd.dot(true, predicted, transpose_a=True)
        hits = mx.nd.sum(counts * mx.nd.eye(c, ctx=self.ctx), axis=1)
        support, predicted = counts.sum(axis=1), counts.sum(axis=0)
        precision = hits / mx.nd.maximum(predicted, 1)  # hits <= predicted: 0 predictions give 0, not NaN
        recall = hits / mx.nd.maximum(support, 1)
        f1 = 2 * precision * recall / mx.nd.maximum(precision + recall, 1e-12)
        values = mx.nd.concat(counts.reshape(-1), precision, recall, f1, support, dim=0).asnumpy()
        matrix = values[:c * c].reshape(c, c)
        rest = values[c * c:].reshape(4, c)
        return {"classes": c, "matrix": [[int(round(v)) for v in row] for row in matrix],
                "precision": [float(v) for v in rest[0]], "recall": [float(v) for v in rest[1]],
                "f1": [float(v) for v in rest[2]], "support": [int(round(v)) for v in rest[3]]}

    def record(self, writer, step: int, epoch: float, wall: float) -> float | None:
        """Add the matrix (artifact) and the macro F1 (metric) of the last validation to `writer`; returns macro F1."""
        scores = self.read()
        if scores is None:
            return None
        macro_f1 = sum(scores["f1"]) / self.classes
        writer.add(step, epoch, wall, {VAL_MACRO_F1: macro_f1})
        writer.add_artifact(step, epoch, wall, ARTIFACT_CONFUSION, scores)
        return macro_f1
