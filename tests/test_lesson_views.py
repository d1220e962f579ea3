"""What `mxdash show` / `compare` print for the lessons: heat table, per-class scores, events, LR range test, boundary
map; at 80 columns nothing is cut or wider than the terminal."""
from __future__ import annotations

import pytest
from rich.console import Console

from experiments.lesson_views import HIT_STYLES, MISS_STYLES, heat_style, render_boundary, render_confusion
from experiments.metrics import (ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS, ARTIFACT_CONFUSION,
                                 ARTIFACT_LR_SUGGESTION, LR, LRFIND_KIND, SMOOTHED_LOSS, TRAIN_LOSS, VAL_LOSS,
                                 VAL_MACRO_F1, dead_key)
from experiments.report import BEST_STYLE, render_compare, render_show
from experiments.store import Store

SCORES = {"classes": 3, "matrix": [[50, 0, 2], [1, 40, 9], [0, 0, 48]], "precision": [0.98, 1.0, 0.81],
          "recall": [0.96, 0.8, 1.0], "f1": [0.97, 0.889, 0.895], "support": [52, 50, 48]}


def render(renderable, width=80) -> str:
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "runs", create=True)


def config(lr=0.01, name="adam"):
    return {"experiment": {"name": "t"}, "data": {"name": "spiral"}, "net": {"name": "mlp", "hidden": [16]},
            "optimizer": {"name": name, "lr": lr}, "train": {"seed": 0, "device": "cpu", "epochs": 10},
            "schedule": {"name": "constant"}}


def test_heat_table_colours_hits_green_and_confusions_red():
    assert heat_style(0.0, True) == heat_style(0.0, False) == "dim"
    assert heat_style(1.0, True) == HIT_STYLES[-1] and heat_style(0.5, True) in HIT_STYLES[1:-1]
    assert heat_style(0.3, False) == MISS_STYLES[-1] and heat_style(0.02, False) == MISS_STYLES[1]
    text = render(render_confusion(SCORES, 7.0, 80))
    assert "confusion matrix (epoch 7): rows true, columns predicted" in text
    assert "macro F1 0.9180" in text and "most confused: 1 as 2 (9), 0 as 2 (2), 1 as 0 (1)" in text
    for row in ("0.980   0.960  0.970       52", "1.000   0.800  0.889       50"):
        assert row in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_show_lists_events_matrix_and_boundary(store):
    _, (run_id,) = store.create_experiment("t", None, config(), {}, [config()])
    store.claim_run(run_id, pid=1)
    rows = [(step, step / 10, 0.0, TRAIN_LOSS, 1.0 / step) for step in range(10, 101, 10)]
    rows += [(step, step / 10, 0.0, dead_key("hidden0"), step / 100) for step in range(10, 101, 10)]
    rows += [(10 * e, float(e), 0.0, VAL_LOSS, v) for e, v in enumerate([0.9, 0.5, 0.4, 0.3, 0.35, 0.4], start=1)]
    rows += [(60, 6.0, 0.0, VAL_MACRO_F1, 0.918)]
    boundary = {"classes": 3, "x": [-1.0, 1.0], "y": [-1.0, 1.0], "size": [4, 4],
                "pred": [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]], "confidence": [[90] * 4] * 4}
    store.append_metrics(run_id, rows, {"step": 100}, artifacts=[
        (60, 6.0, 0.0, ARTIFACT_CONFUSION, SCORES), (100, 10.0, 0.0, ARTIFACT_BOUNDARY, boundary),
        (10, 1.0, 0.0, ARTIFACT_BOUNDARY_POINTS, {"points": [[-0.9, 0.9]], "labels": [1]})])
    store.finish_run(run_id, "completed")
    text = render(render_show(store, store.get_run(run_id), 80))
    for expected in ("events", "hidden0 passed 40% dead at step 40", "val loss rising since epoch 4 (overfitting)",
                     "confusion matrix (epoch 6)", "precision", "decision boundary (step 100)", "val_macro_f1"):
        assert expected in text, expected
    assert all(len(line) <= 80 for line in text.splitlines())


def test_boundary_map_is_half_blocks_with_the_points_on_it():
    boundary = {"classes": 2, "x": [0.0, 4.0], "y": [0.0, 4.0], "size": [8, 8],
                "pred": [[0] * 4 + [1] * 4] * 4 + [[1] * 8] * 4, "confidence": [[100] * 8] * 8}
    text = render_boundary(boundary, {"points": [[0.25, 3.75], [3.75, 0.25]], "labels": [0, 1]}, columns=8)
    lines = text.plain.split("\n")
    # 8 grid rows -> 4 character rows; the points at top-left and bottom-right
    assert lines == ["●▀▀▀▀▀▀▀", "▀▀▀▀▀▀▀▀", "▀▀▀▀▀▀▀▀", "▀▀▀▀▀▀▀●"]
    styles = {(span.start, str(span.style)) for span in text.spans}
    orange, blue = "rgb(240,130,40)", "rgb(50,120,230)"  # classes 0 and 1 at full confidence
    assert (1, f"{orange} on {orange}") in styles and (4, f"{blue} on {blue}") in styles
    assert (9 * 3 + 1, f"{blue} on {blue}") in styles  # bottom half: class 1 everywhere


def test_show_of_a_range_test_and_compare_macro_f1(store):
    _, (test_id,) = store.create_experiment("t-lrfind", None, config(1e-7), {}, [{**config(1e-7), "lrfind": {}}])
    store.update_run(test_id, kind=LRFIND_KIND)
    rows = [(s, s / 20, 0.0, key, value) for s in range(1, 51)
            for key, value in ((LR, 1e-7 * 10 ** (8 * (s - 1) / 49)), (SMOOTHED_LOSS, 2.3 - s / 100),
                               (TRAIN_LOSS, 2.3 - s / 100))]
    found = {"rule": "minimum", "lr": 0.05, "min_loss_lr": 0.5, "min_loss": 1.8, "steep_lr": 0.1, "reason": "",
             "optimizer": "adam", "low": 1e-7, "high": 10.0, "steps": 100, "steps_run": 50, "stopped_early": True,
             "stop_lr": 10.0, "smoothing": 0.98, "stop_factor": 4.0}
    store.append_metrics(test_id, rows, {"step": 50, "lr": 0.05},
                         artifacts=[(50, 2.5, 0.0, ARTIFACT_LR_SUGGESTION, found)])
    store.finish_run(test_id, "completed")
    text = render(render_show(store, store.get_run(test_id), 80))
    for expected in ("best LR 0.05 (adam)", "LR range test", "suggested lr", "minimum: lowest smoothed loss / 10",
                     "lowest smoothed loss  1.8000 at lr 0.5", "lr 1e-07 to 10 in 100 steps",
                     "step 50, lr 10: smoothed loss > 4x its best",
                     "smoothed_loss"):
        assert expected in text, expected
    assert "final val loss" not in text  # no validation in a range test
    assert all(len(line) <= 80 for line in text.splitlines())

    _, run_ids = store.create_experiment("t", None, config(), {}, [config(0.01), config(0.1)])
    for run_id, f1 in zip(run_ids, (0.9, 0.95)):
        store.append_metrics(run_id, [(10, 1.0, 0.0, VAL_MACRO_F1, f1)], {"step": 10})
    table = render_compare(store, store.resolve(run_ids))
    labels = [str(cell) for cell in table.columns[0].cells]
    row = labels.index("final macro F1")
    cells = [list(column.cells) for column in table.columns[1:]]
    assert [str(c[row]) for c in cells] == ["0.9000", "0.9500"]
    assert [getattr(c[row], "style", "") == BEST_STYLE for c in cells] == [False, True]
