"""Defects from a user trial of the dashboard: the Dead ReLUs crosshair had no readout, the Compare head said "4 runs"
twice, the Boundaries map titles at 80 columns were cut before the accuracy, and the Dead ReLUs note at 80 columns
did not say how to see the heatmaps left out. Each test reads the screen through Textual's Pilot on a synthetic store
and compares it with what the store holds."""
from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from contextlib import asynccontextmanager

import pytest

from conftest_lessons import make_lesson_store
from conftest_tui import make_app, make_store, run_async, runs_view, settle
from experiments.store import Store

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


def pane_text(app, widget_id: str) -> str:
    return app.main.query_one(f"#{widget_id}").content.plain


async def show(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
    await settle(pilot)


@asynccontextmanager
async def view_of_experiment(runs_dir, size, experiment: str, view_key: str):
    """The app at `size`, its runs filtered to `experiment`, on the view `view_key` opens: yields (app, pilot)."""
    app = make_app(runs_dir)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        runs_view(app).set_filter(f"exp:{experiment}")
        await show(pilot, view_key)
        yield app, pilot


def stored_dead(runs_dir, run_ids) -> dict:
    """run id -> layer -> {probe step: dead fraction}, through the store's own API."""
    store = Store(runs_dir)
    out = {}
    for run_id in run_ids:
        layers = defaultdict(dict)
        for _, step, _, _, key, value in store.metrics_since(run_id):
            if key.startswith("dead/"):
                layers[key.split("/", 1)[1]][int(step)] = value
        out[run_id] = dict(layers)
    store.close()
    return out


def readout_lines(plain: str) -> list[str]:
    """The crosshair readout: the line that starts `step N │` and the lines it wraps onto (up to a blank line or
    the next block)."""
    lines = plain.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"step \d+ │", line)), None)
    assert start is not None, "no crosshair readout:\n" + plain
    out = [lines[start]]
    for line in lines[start + 1:]:
        if not line.strip() or "│" in line or line.startswith(("◆", "dead ")):
            break
        out.append(line)
    return out


@pytest.fixture
def dead_store(tmp_path):
    """dead_relu-1: 4 runs (relu / leaky_relu x 2 LRs), dead/dense0 and dead/dense1 probed every 50 steps."""
    return make_store(tmp_path / "runs", experiments=3, runs_per_experiment=4, points_per_run=2000, logs=False)


# -- 1. the Dead ReLUs crosshair reads each run's layers at the probe step -------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_dead_relu_crosshair_reads_every_runs_layers_as_stored_percentages(dead_store, size):
    async with view_of_experiment(dead_store, size, "dead_relu", "4") as (app, pilot):
        assert not re.search(r"^step \d+ │", pane_text(app, "dead-pane"), re.M)  # no crosshair yet
        run_ids = app.plan_run_ids()
        assert len(run_ids) == 4
        dead = stored_dead(dead_store, run_ids)
        labels = {unit.run_ids[0]: unit.label for unit in app.plan.units}
        for keys in (("right",), ("shift+right",), ("shift+left", "shift+left", "shift+left")):
            await show(pilot, *keys)
            plain = pane_text(app, "dead-pane")
            readout = readout_lines(plain)
            step = int(re.match(r"step (\d+) │", readout[0]).group(1))
            joined = " ".join(readout)
            for run_id in run_ids:
                layers = dead[run_id]
                # the probe the readout names is one the run recorded (its latest at or before the crosshair)
                assert all(step in values for values in layers.values()), (run_id, step, layers)
                reading = f"{labels[run_id]} " + " ".join(f"{layer} {100 * values[step]:.1f}%"
                                                         for layer, values in sorted(layers.items()))
                assert reading in joined, (reading, readout)


@run_async
async def test_dead_relu_crosshair_reads_each_layer_of_a_single_run(dead_store):
    app = make_app(dead_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.set_selected({"dead_relu-1.1"})
        await show(pilot, "4", "right")
        readout = " ".join(readout_lines(pane_text(app, "dead-pane")))
        step = int(re.match(r"step (\d+) │", readout).group(1))
        for layer, values in stored_dead(dead_store, ["dead_relu-1.1"])["dead_relu-1.1"].items():
            assert f"━ {layer} {100 * values[step]:.1f}%" in readout, readout


# -- 2. Compare says once what it compares -------------------------------------------------------------------------
@run_async
async def test_compare_head_says_once_what_is_compared(dead_store):
    async with view_of_experiment(dead_store, (160, 48), "dead_relu", "5") as (app, pilot):
        head = str(app.main.query_one("#compare-head").content)
        assert head.startswith("4 runs the filter shows  ←→"), head
        assert head.count("4 runs") == 1, head
        app.set_selected({"dead_relu-1.1", "dead_relu-1.2", "dead_relu-1.3"})
        await settle(pilot)
        head = str(app.main.query_one("#compare-head").content)
        assert head.startswith("3 selected runs  ←→"), head
        assert head.count("3 ") == 1, head


# -- 3. Boundaries: the accuracy is in every map title, at 80 columns too ----------------------------------------------
@pytest.fixture
def playground_store(tmp_path):
    """The synthetic lesson store, with a different final accuracy per playground run."""
    runs_dir = make_lesson_store(tmp_path / "runs")
    accuracies = {"playground-1.1": 0.471, "playground-1.2": 0.612, "playground-1.3": 0.953, "playground-1.4": 0.884}
    conn = sqlite3.connect(runs_dir / "mxdash.db")
    with conn:
        conn.executemany("UPDATE runs SET val_acc = ? WHERE id = ?", [(a, r) for r, a in accuracies.items()])
    conn.close()
    return runs_dir, accuracies


@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_boundary_titles_show_the_accuracy_at_every_width(playground_store, size):
    runs_dir, accuracies = playground_store
    async with view_of_experiment(runs_dir, size, "playground", "7") as (app, pilot):
        lines = pane_text(app, "boundary-pane").splitlines()[1:]  # under the header: the maps, a title over each
        titles = "\n".join(line for line in lines if "%" in line)
        assert titles.count("%") == 4, titles
        labels = {unit.run_ids[0]: unit.label for unit in app.plan.units}
        for run_id, acc in accuracies.items():
            if size[0] >= 160:  # room for everything: what differs, the frame's step, the accuracy
                assert re.search(rf"{re.escape(labels[run_id])} · step \d+ · acc {100 * acc:.1f}%", titles), titles
            else:
                assert f"{100 * acc:.0f}%" in titles, titles
                assert "…" not in titles, titles


# -- 4. Dead ReLUs at 80 columns: the legend names runs by what differs, the note says how to see the rest -----------
@run_async
async def test_dead_relu_at_80_columns_names_runs_by_what_differs_and_says_how_to_see_the_rest(dead_store):
    async with view_of_experiment(dead_store, (80, 24), "dead_relu", "4") as (app, pilot):
        plain = pane_text(app, "dead-pane")
        legend = plain.splitlines()[1]  # under the title: a line per run, named by what differs
        assert "━ relu sgd lr=0.05" in legend and "━ leaky_relu momentum" in legend, legend
        note = next(line for line in plain.splitlines() if line.startswith("+"))
        assert "select fewer" in note and "v" in note.split() and "heatmaps only" in note, note


# -- 4. Compare: a value wider than its run's id is not cut -----------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_compare_columns_hold_their_values_whole(tmp_path, size):
    """Seen in tmux: with ids as short as `cnn-1.1` the columns were as wide as the id, and Compare read "momentu"
    and "complet"."""
    from rich.cells import cell_len

    store = Store(tmp_path / "runs", create=True)
    configs = [{"net": {"name": "cnn"}, "data": {"name": "digits"}, "optimizer": {"name": name, "lr": 0.05},
                "train": {"seed": 0, "device": "cpu", "epochs": 6}} for name in ("momentum", "nesterov")]
    _, run_ids = store.create_experiment("cnn", None, configs[0], {}, configs)
    for run_id in run_ids:
        store.update_run(run_id, status="completed", epoch=6.0, train_loss=0.1236, best_val_acc=0.9526)
    store.close()
    async with view_of_experiment(tmp_path / "runs", size, "cnn", "5") as (app, pilot):
        table = app.main.query_one("#compare-table")
        for run_id in run_ids:
            column = next(c for c in table.columns.values() if c.key.value == run_id)
            cells = [str(cell) for cell in table.get_column(column.key)]
            assert "completed" in cells and any(name in cells for name in ("momentum", "nesterov")), cells
            assert all(cell_len(cell) <= column.width for cell in cells), (column.width, cells)
