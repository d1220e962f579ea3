"""Confusion matrices and per-class scores: on the device, equal to scikit-learn's, recorded at every validation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from conftest import create_runs

mx = pytest.importorskip("mxnet")

from experiments.confusion import ConfusionMatrix  # noqa: E402
from experiments.metrics import ARTIFACT_CONFUSION, VAL_ACC, VAL_MACRO_F1  # noqa: E402

QUIET = lambda line: None  # noqa: E731


def sklearn_scores(labels, predicted, classes):
    matrix = confusion_matrix(labels, predicted, labels=list(range(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=list(range(classes)),
                                                                     zero_division=0)
    return matrix, precision, recall, f1, support


def test_matrix_and_scores_equal_sklearn_on_the_same_predictions():
    rng = np.random.RandomState(3)
    classes = 5
    labels = rng.randint(0, 4, size=203)  # class 4 never occurs
    scores = rng.randn(203, classes).astype("float32")
    scores[:, 3] -= 10  # class 3 is never predicted: precision 0/0
    confusion = ConfusionMatrix(classes, mx.cpu())
    for lo in range(0, 203, 64):  # uneven batches, as validation has
        confusion.update(mx.nd.array(labels[lo:lo + 64]), mx.nd.array(scores[lo:lo + 64]))
    got = confusion.read()
    matrix, precision, recall, f1, support = sklearn_scores(labels, scores.argmax(axis=1), classes)
    assert got["matrix"] == matrix.tolist()
    assert np.allclose(got["precision"], precision) and np.allclose(got["recall"], recall)
    assert np.allclose(got["f1"], f1, atol=1e-6) and got["support"] == support.tolist()
    assert got["precision"][3] == 0.0 and got["recall"][4] == 0.0  # zero division gives 0, as sklearn's default
    confusion.reset()
    assert confusion.read() is None


def test_training_run_records_a_matrix_per_epoch_equal_to_sklearn_on_the_final_net(runs_dir):
    """The real loop: one matrix per validation; the last one equals scikit-learn's on the final parameters'
    predictions (the last checkpoint is taken right after the last validation), and its trace is val_acc."""
    import nets
    from experiments.data import load_dataset
    from experiments.train import checkpoint_files, execute

    raw = {"data": {"name": "digits"}, "net": {"name": "mlp", "hidden": [16]},
           "optimizer": {"name": "adam", "lr": 0.003}, "train": {"epochs": 3, "batch_size": 64}}
    store, (run_id,) = create_runs(runs_dir, raw)
    assert execute(store, run_id, log=QUIET) == "completed"
    matrices = store.artifacts(run_id, ARTIFACT_CONFUSION)
    assert [a["epoch"] for a in matrices] == [1.0, 2.0, 3.0]
    macro = [row[5] for row in store.metrics_since(run_id, keys=[VAL_MACRO_F1])]
    assert macro == pytest.approx([np.mean(a["payload"]["f1"]) for a in matrices])

    config = store.get_run(run_id)["config"]
    data = load_dataset(config["data"])
    net = nets.build_net("mlp", {"hidden": [16]}, data.info)
    net.load_parameters(str(checkpoint_files(store.run_dir(run_id))[0]), ctx=mx.cpu())
    labels, predicted = [], []
    for x, y, _ in data.val_batches(64, mx.cpu()):
        predicted.extend(net(x).asnumpy().argmax(axis=1))
        labels.extend(y.asnumpy().astype(int))
    matrix, precision, recall, f1, support = sklearn_scores(labels, predicted, 10)
    last = matrices[-1]["payload"]
    assert last["matrix"] == matrix.tolist() and last["support"] == support.tolist()
    assert np.allclose(last["precision"], precision) and np.allclose(last["f1"], f1, atol=1e-6)
    val_acc = [row[5] for row in store.metrics_since(run_id, keys=[VAL_ACC])][-1]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(val_acc)
