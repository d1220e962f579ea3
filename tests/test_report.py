"""report: sparklines, config diffs, formatting, and the show/compare renderables."""
import math

import pytest
from rich.console import Console

from experiments.report import (BEST_STYLE, BLOCKS, MISSING, NO_DATA_BLOCK, differing_config, flat_config,
                                format_duration, render_compare, render_show, sparkline, status_style)
from experiments.store import Store


def make_config(lr=0.01, hidden=(32,), **train):
    return {"experiment": {"name": "t"}, "data": {"name": "digits"},
            "net": {"name": "mlp", "hidden": list(hidden)}, "optimizer": {"name": "adam", "lr": lr},
            "train": {"seed": 0, "device": "cpu", "epochs": 2, **train}, "schedule": {"name": "constant"}}


def render(renderable) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


# -- sparkline ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 3, 20, 37, 1000])
@pytest.mark.parametrize("width", [1, 20, 60])
def test_sparkline_length_is_width(count, width):
    assert len(sparkline([math.sin(i) for i in range(count)], width)) == width


@pytest.mark.parametrize("count", [5, 60, 999])
def test_sparkline_monotone_input_gives_non_decreasing_blocks(count):
    line = sparkline([i * i for i in range(count)], 40)
    levels = [BLOCKS.index(char) for char in line]
    assert levels == sorted(levels)
    assert levels[0] == 0 and levels[-1] == len(BLOCKS) - 1


def test_sparkline_constant_and_non_finite():
    assert len(set(sparkline([3.0] * 50, 10))) == 1
    assert sparkline([float("nan"), None, float("inf")], 6) == NO_DATA_BLOCK * 6
    line = sparkline([1.0, 2.0, 3.0, 4.0, float("nan"), float("nan")], 6)
    assert line[:4] == BLOCKS[0] + line[1:3] + BLOCKS[-1] and line[4:] == NO_DATA_BLOCK * 2
    assert sparkline([], 5) == " " * 5


def test_sparkline_log_scale_spreads_decades():
    values = [10.0 ** -i for i in range(8)]
    log_line = sparkline(values, 8, log=True)
    assert [BLOCKS.index(c) for c in log_line] == list(range(7, -1, -1))  # one block per decade
    assert sparkline(values, 8)[2:] == BLOCKS[0] * 6  # linear: everything below 0.01 is the floor


# -- config and formatting ---------------------------------------------------------------------------------------------
def test_flat_config():
    assert flat_config({"optimizer": {"name": "sgd", "lr": 0.1, "extra": {"nesterov": True}}, "net": {"hidden": [32]}}) \
        == {"optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.extra.nesterov": True, "net.hidden": [32]}


def test_differing_config_returns_exactly_the_differing_keys():
    runs = [{"config": make_config(0.01, (32,))}, {"config": make_config(0.1, (32,))},
            {"config": make_config(0.01, (64,), clip=1.0)}]
    assert differing_config(runs) == [
        ("net.hidden", [[32], [32], [64]]),
        ("optimizer.lr", [0.01, 0.1, 0.01]),
        ("train.clip", [MISSING, MISSING, 1.0]),
    ]
    assert differing_config(runs[:1]) == []
    assert differing_config([{"config": {"a": {"b": 1}}}, {"config": {"a": {"b": True}}}]) == [("a.b", [1, True])]


def test_format_duration_and_status_style():
    assert [format_duration(s) for s in (None, 0, 3.25, 42.9, 185, 7380, 100_000)] == \
        [MISSING, "0.0s", "3.2s", "42s", "3m 05s", "2h 03m", "1d 03h"]
    assert status_style("completed") == "green" and status_style("failed") == "red"
    assert status_style("running") == "cyan" and status_style("lost") == "magenta"
    assert status_style("stopped") == "blue" and status_style("queued") == "dim"
    assert status_style("diverged") == "dark_orange" and status_style("mystery") == ""


# -- show / compare ----------------------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "runs", create=True)
    yield store
    store.close()


def add_run_metrics(store, run_id, loss_offset, dead_final):
    rows = []
    for step in range(10, 201, 10):
        rows += [(step, step / 100, step * 0.1, "train_loss", 1.0 / step + loss_offset), (step, step / 100, step * 0.1,
                                                                                          "lr", 0.01)]
        rows += [(step, step / 100, step * 0.1, "dead/dense0", dead_final * step / 200),
                 (step, step / 100, step * 0.1, "dead/dense1", 0.5 * dead_final * step / 200)]
        if step % 100 == 0:
            rows += [(step, step / 100, step * 0.1, "val_loss", 2.0 / step + loss_offset),
                     (step, step / 100, step * 0.1, "val_acc", 0.5 + step / 1000 - loss_offset)]
    store.append_metrics(run_id, rows, {"step": 200, "epoch": 2.0, "train_loss": 0.005 + loss_offset,
                                        "val_loss": 0.01 + loss_offset, "best_val_loss": 0.01 + loss_offset,
                                        "val_acc": 0.7 - loss_offset, "best_val_acc": 0.7 - loss_offset,
                                        "samples_per_s": 2500.0})


def test_render_show(store):
    _, (run_id,) = store.create_experiment("t", None, make_config(), {}, [make_config(0.05)])
    store.claim_run(run_id, pid=4242, host="box")
    add_run_metrics(store, run_id, 0.0, 0.4)
    store.finish_run(run_id, "diverged", diverged_step=180, error="loss became [nan] at step 180",
                     traceback="Traceback (most recent call last):\n  File \"train.py\"\nFloatingPointError: nan",
                     versions={"mxnet": "1.9.1", "python": "3.11.7"}, git_commit="abc1234")
    store.log_path(run_id).write_text("".join(f"log line {i:02d}\n" for i in range(40)))
    text = render(render_show(store, store.get_run(run_id)))
    for expected in (run_id, "diverged", "box", "4242", "mxnet 1.9.1", "abc1234", "optimizer", "lr", "0.05",
                     "hidden", "[32]", "final train loss", "best val acc", "70.00%", "2,500",
                     "diverged at step 180", "loss became [nan] at step 180", "FloatingPointError",
                     "train_loss", "val_loss", "val_acc", "dead/dense0", "dead/dense1", "log line 39", "log line 25"):
        assert expected in text, expected
    assert "log line 24" not in text  # only the last 15 log lines
    spark_row = next(line for line in text.splitlines() if line.strip().startswith("train_loss"))
    assert any(block in spark_row for block in BLOCKS)


def test_render_show_queued_run_without_metrics_or_log(store):
    _, (run_id,) = store.create_experiment("t", None, make_config(), {}, [make_config()])
    text = render(render_show(store, store.get_run(run_id)))
    assert run_id in text and "queued" in text and "no data" in text and "log line" not in text


def test_render_compare(store):
    configs = [make_config(0.01), make_config(0.1), make_config(0.01, (64,))]
    _, run_ids = store.create_experiment("t", None, make_config(), {}, configs)
    for run_id, offset, dead in zip(run_ids, (0.2, 0.0, 0.1), (0.3, 0.6, 0.1)):
        store.claim_run(run_id, pid=1)
        add_run_metrics(store, run_id, offset, dead)
        store.finish_run(run_id, "completed")
    runs = store.resolve(run_ids)
    table = render_compare(store, runs)
    text = render(table)
    assert "compare t-1" in text and run_ids == [str(c.header) for c in table.columns[1:]]  # ids, not #1
    for expected in ("optimizer.lr", "net.hidden", "status", "completed", "final train loss",
                     "best val loss", "best val acc", "final dead/dense0", "final dead/dense1", "steps", "duration"):
        assert expected in text, expected
    assert "data.name" not in text and "train.seed" not in text  # equal everywhere: not shown

    labels = [str(cell) for cell in table.columns[0].cells]
    best_column = {}  # row label -> index of the run whose cell is highlighted
    for column_index, column in enumerate(table.columns[1:]):
        for label, cell in zip(labels, column.cells):
            if getattr(cell, "style", "") == BEST_STYLE:
                best_column.setdefault(label, []).append(column_index)
    assert best_column["final train loss"] == [1]
    assert best_column["best val loss"] == [1]
    assert best_column["best val acc"] == [1]
    assert best_column["final dead/dense0"] == [2]  # fewest dead units
    assert "steps" not in best_column and "optimizer.lr" not in best_column


def test_latest_metrics(store):
    _, (run_id,) = store.create_experiment("t", None, make_config(), {}, [make_config()])
    add_run_metrics(store, run_id, 0.0, 0.4)
    latest = store.latest_metrics(run_id, "dead/")
    assert latest == {"dead/dense0": (200, pytest.approx(0.4)), "dead/dense1": (200, pytest.approx(0.2))}


def test_compare_of_many_runs_turns_to_one_row_per_run_and_never_cuts_a_value(tmp_path):
    """Six runs side by side do not fit 80 columns (ids and values were cut to "playgro…", "0.9…"): the table
    turns to one row per run, and leaves out the least telling columns until every value fits."""
    import io

    from rich.console import Console

    from conftest import create_runs

    store, run_ids = create_runs(tmp_path / "runs", {"train": {"epochs": 1}, "grid": {
        "net.hidden": [[2], [4], [32]], "net.activation": ["relu", "tanh"]}}, "playground")
    for i, run_id in enumerate(run_ids):
        store.finish_run(run_id, "completed", train_loss=0.123456789 / (i + 1), best_val_acc=0.5 + i / 20)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render_compare(store, store.resolve(run_ids), weights=True, console=console))
    text = console.file.getvalue()
    lines = text.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines) and "…" not in text, text
    assert lines[1].split()[:3] == ["run", "hidden", "activation"]
    assert [line.split()[0] for line in lines[2:8]] == run_ids  # ids whole, one row each
    wide = Console(file=io.StringIO(), width=200, color_system=None)
    wide.print(render_compare(store, store.resolve(run_ids[:2]), console=wide))
    assert run_ids[0] in wide.file.getvalue().splitlines()[2]  # two runs fit: ids as column headers


def test_the_final_table_of_mxdash_run_fits_80_columns_without_cutting_a_value(tmp_path):
    import io

    from rich.console import Console

    from conftest import create_runs
    from experiments.cli import final_table

    store, run_ids = create_runs(tmp_path / "runs", {"train": {"epochs": 1}, "grid": {
        "net.hidden": [[2], [4], [32]], "net.activation": ["relu", "tanh"], "optimizer.lr": [0.01, 0.003]}},
        "playground")
    for i, run_id in enumerate(run_ids):
        store.finish_run(run_id, "completed", train_loss=0.912345 / (i + 1), best_val_acc=0.5 + i / 40)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(final_table(store.list_runs(), 80))
    text = console.file.getvalue()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines()), text
    header = next(line for line in text.splitlines() if "run" in line and "status" in line)
    assert [word for word in header.replace("┃", " ").split()][:4] == ["run", "lr", "hidden", "activation"]
    assert "0.9123" in text and "playground-1.12" in text
