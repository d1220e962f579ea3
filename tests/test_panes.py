"""tui/panes.py: the plot panes in a tiny Textual app with deterministic data (the real DashboardModel)."""
from __future__ import annotations

import asyncio
import functools
import threading
import time

import numpy as np
import pytest
from textual.app import App, ComposeResult

from tui.model import DashboardModel, MetricBatch
from tui.panes import (CurvesPane, DeadReluPane, LRPane, PlotPane, ViewJob, build_curves, build_dead, build_lr,
                       format_lr, snapshot_runs)

OPTIMIZERS = ("adam", "sgd")
LRS = (1e-3, 1e-2, 1e-1, 1.0)
LAYERS = ("dense0", "dense1", "dense2")


def run_rows(n_runs: int, experiment: str = "sweep-1") -> list[dict]:
    """Runs of one sweep: optimizer x LR; the largest LR of each optimizer diverged."""
    rows = []
    for i in range(n_runs):
        optimizer, lr = OPTIMIZERS[i % 2], LRS[(i // 2) % len(LRS)]
        diverged = lr == 1.0
        rows.append({
            "id": f"{experiment}.{i + 1}", "experiment_id": experiment, "idx": i + 1, "optimizer": optimizer,
            "lr": lr, "status": "diverged" if diverged else "completed", "created": 1000.0 + i,
            "started": 1000.0, "diverged_step": 400 if diverged else None,
            "best_val_loss": None if diverged else 0.3 + abs(np.log10(lr) + 2) * 0.1 + 0.05 * (i % 2),
            "val_loss": None if diverged else 0.35 + abs(np.log10(lr) + 2) * 0.1 + 0.05 * (i % 2),
            "train_loss": None if diverged else 0.3, "best_val_acc": 0.9, "val_acc": 0.9, "config": {},
        })
    return rows


def metric_groups(row: dict, n_points: int, seed: int) -> dict:
    """train_loss/lr every 10 steps, val per "epoch", dead/<layer> every 50 steps (large LR kills dense1)."""
    rng = np.random.default_rng(seed)
    step = np.arange(n_points, dtype=np.float64) * 10
    epoch = step / (10 * max(1, n_points // 5))
    wall = 1000.0 + step * 0.01
    loss = 2.3 * np.exp(-step / (3 * step[-1] / 4 + 1)) + 0.1 * rng.standard_normal(n_points) + 0.3
    if row["status"] == "diverged":
        loss[40:] = np.nan
    groups = {
        (row["id"], "train_loss"): (step, epoch, wall, loss),
        (row["id"], "lr"): (step, epoch, wall, row["lr"] * (0.5 + 0.5 * np.cos(np.pi * step / step[-1]))),
    }
    epochs = np.arange(1, 6, dtype=np.float64)
    val_step = epochs * step[-1] / 5
    groups[(row["id"], "val_loss")] = (val_step, epochs, 1000 + val_step * 0.01, 1.5 / epochs + 0.2)
    groups[(row["id"], "val_acc")] = (val_step, epochs, 1000 + val_step * 0.01, 0.9 - 0.4 / epochs)
    probe = step[::5]
    for k, layer in enumerate(LAYERS):
        dead = np.full(len(probe), 0.05 * k)
        if row["lr"] >= 0.1 and layer == "dense1":
            dead[probe >= 300] = 0.9
        groups[(row["id"], f"dead/{layer}")] = (probe, probe / 100, 1000 + probe * 0.01, dead)
    return groups


def make_model(n_runs: int = 4, n_points: int = 200) -> DashboardModel:
    model = DashboardModel()
    rows = run_rows(n_runs)
    groups = {}
    for i, row in enumerate(rows):
        groups.update(metric_groups(row, n_points, seed=i))
    total = sum(len(g[0]) for g in groups.values())
    model.apply(MetricBatch(groups=groups, max_id=total, rows=total), rows)
    return model


def append_points(model: DashboardModel, run_id: str, key: str, n: int = 3) -> None:
    series = model.series[run_id][key]
    last = float(series.step[-1])
    step = last + 10 * np.arange(1, n + 1)
    batch = MetricBatch(groups={(run_id, key): (step, step / 100, 1000 + step * 0.01, np.full(n, 0.4))},
                        max_id=model.last_metric_id + n, rows=n)
    model.apply(batch, [])


def run_async(test):
    """Run an `async def` test with asyncio.run (no pytest-asyncio here); parametrize still injects arguments."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


class PaneApp(App):
    """One pane filling the screen, plus an app key that proves the UI thread is free."""

    BINDINGS = [("z", "ping", "Ping")]

    def __init__(self, pane_class: type[PlotPane]):
        super().__init__()
        self.pane_class = pane_class
        self.pings = 0

    def compose(self) -> ComposeResult:
        yield self.pane_class(id="pane")

    def on_mount(self) -> None:
        self.query_one("#pane").focus()

    def action_ping(self) -> None:
        self.pings += 1


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def shown(pane: PlotPane) -> str:
    content = pane.content
    return content.plain if hasattr(content, "plain") else str(content)


# -- pure builders ----------------------------------------------------------------------------------------------

def job_for(model, pane_keys, options, width=100, height=30, selected=None):
    selected = list(model.runs) if selected is None else selected
    keys = lambda rid: [k for k in model.series.get(rid, {}) if any(  # noqa: E731
        k == p or (p.endswith("/") and k.startswith(p)) for p in pane_keys)]
    runs, experiment = snapshot_runs(model, selected, keys)
    return ViewJob(width, height, options, runs, title=experiment)


def test_format_lr():
    assert [format_lr(v) for v in (1e-3, 3e-4, 0.01, 0.1, 1.0, None)] == ["1e-3", "3e-4", "0.01", "0.1", "1", "?"]


@pytest.mark.parametrize("width, height", [(80, 18), (200, 55), (30, 8)])
def test_builders_fill_exactly_the_pane(width, height):
    model = make_model()
    curves = build_curves(job_for(model, CurvesPane.METRIC_KEYS, {"x": "step", "log_y": False, "smoothing": 0.6},
                                  width, height))
    lr = build_lr(job_for(model, LRPane.METRIC_KEYS, {"metric": "val loss", "log_y": False}, width, height))
    dead = build_dead(job_for(model, DeadReluPane.METRIC_KEYS, {"heatmaps_only": False}, width, height))
    for text in (curves, lr, dead):
        lines = text.plain.split("\n")
        assert len(lines) == height and all(len(line) == width for line in lines)


def test_curves_show_runs_divergence_and_validation():
    model = make_model(n_runs=8)
    text = build_curves(job_for(model, CurvesPane.METRIC_KEYS, {"x": "epoch", "log_y": True, "smoothing": 0.9},
                                160, 40)).plain
    assert "#1 adam 1e-3" in text and "#2 sgd 1e-3" in text
    assert "val (dashed)" in text and "val accuracy" in text and "diverged" in text
    assert "×" in text.split("\n", 2)[2]  # runs 7 and 8 (lr 1) diverged: NaN tail
    assert "log y" in text and "ema 0.9" in text and "epoch" in text


def test_lr_chart_marks_best_lr_and_diverged_runs():
    model = make_model(n_runs=8)
    text = build_lr(job_for(model, LRPane.METRIC_KEYS, {"metric": "val loss", "log_y": False}, 120, 36)).plain
    assert "adam" in text and "sgd" in text and "best LR" in text and "diverged" in text
    assert text.count("●") >= 3  # legend + one per optimizer
    assert "applied LR" in text and "1e-3" in text


def test_lr_pane_without_lr_axis_says_so():
    model = make_model(n_runs=2)  # both at lr 1e-3
    text = build_lr(job_for(model, LRPane.METRIC_KEYS, {"metric": "val loss", "log_y": False}, 100, 30)).plain
    assert "No LR axis" in text


def test_dead_pane_shows_killed_layer():
    model = make_model(n_runs=6)
    text = build_dead(job_for(model, DeadReluPane.METRIC_KEYS, {"heatmaps_only": False}, 120, 60,
                              selected=["sweep-1.5"])).plain
    assert "dense1 >50% dead at step 300" in text
    assert "█" in text and "dense0" in text


def test_dead_pane_without_probes_and_empty_selection():
    model = make_model(n_runs=2)
    for key in [k for k in model.series["sweep-1.1"] if k.startswith("dead/")]:
        del model.series["sweep-1.1"][key]
    assert "No dead-ReLU probe data" in build_dead(job_for(model, DeadReluPane.METRIC_KEYS,
                                                           {"heatmaps_only": False}, 80, 20,
                                                           selected=["sweep-1.1"])).plain
    assert "No runs to plot" in build_curves(job_for(model, CurvesPane.METRIC_KEYS,
                                                     {"x": "step", "log_y": False, "smoothing": 0.0},
                                                     80, 20, selected=[])).plain


# -- widgets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pane_class, expected", [
    (CurvesPane, ["#1 adam 1e-3", "#4 sgd 0.01", "val accuracy"]),
    (LRPane, ["adam", "sgd", "best LR", "applied LR"]),
    (DeadReluPane, ["dead ReLU fraction", "dense1"]),
])
@run_async
async def test_pane_renders_legend_off_thread(pane_class, expected):
    model = make_model()
    app = PaneApp(pane_class)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", PlotPane)
        pane.update_view(model, list(model.runs), set(model.runs))
        await settle(pilot)
        text = shown(pane)
        for label in expected:
            assert label in text
        assert pane.render_count == 1


@run_async
async def test_no_change_means_no_render_and_new_points_rerender():
    model = make_model()
    app = PaneApp(CurvesPane)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", CurvesPane)
        selected = list(model.runs)
        pane.update_view(model, selected, set(selected))
        await settle(pilot)
        assert pane.render_count == 1
        pane.update_view(model, selected, set())  # nothing changed
        pane.update_view(model, selected, set(selected))  # "changed" but the data is identical
        pane.update_view(model, selected, {"other-run"})  # a run that is not shown
        await settle(pilot)
        assert pane.render_count == 1
        append_points(model, "sweep-1.1", "dead/dense0")  # a series this pane does not draw
        pane.update_view(model, selected, {"sweep-1.1"})
        assert pane.render_count == 1
        append_points(model, "sweep-1.1", "train_loss")
        pane.update_view(model, selected, {"sweep-1.1"})
        await settle(pilot)
        assert pane.render_count == 2
        pane.update_view(model, selected[:2], set())  # selection changed
        await settle(pilot)
        assert pane.render_count == 3
        assert "#3" not in shown(pane)


@run_async
async def test_toggles_rerender():
    model = make_model()
    app = PaneApp(CurvesPane)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", CurvesPane)
        pane.update_view(model, list(model.runs), set(model.runs))
        await settle(pilot)
        assert "log y" not in shown(pane).split("\n")[0]
        await pilot.press("l")
        await settle(pilot)
        assert pane.render_count == 2 and "log y" in shown(pane).split("\n")[0]
        await pilot.press("x")
        await settle(pilot)
        assert "epoch" in shown(pane).split("\n")[0]
        await pilot.press("m")
        await settle(pilot)
        assert "ema 0.9" in shown(pane).split("\n")[0]
        assert pane.render_count == 4


@run_async
async def test_resize_rerenders_to_the_new_size():
    model = make_model()
    app = PaneApp(LRPane)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one("#pane", LRPane)
        pane.update_view(model, list(model.runs), set(model.runs))
        await settle(pilot)
        assert len(shown(pane).split("\n")[0]) == 80
        await pilot.resize_terminal(200, 60)
        await settle(pilot)
        lines = shown(pane).split("\n")
        assert len(lines) == 60 and len(lines[0]) == 200


@run_async
async def test_big_render_does_not_block_the_ui():
    """20 runs x 100k points: a key press is handled while the render is in flight, and the render finishes."""
    model = make_model(n_runs=20, n_points=100_000)
    app = PaneApp(CurvesPane)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", CurvesPane)
        gate, started, durations = threading.Event(), threading.Event(), []
        real_build = pane.build

        def gated_build(job):
            started.set()
            gate.wait(10)  # hold the worker so the key press provably happens mid-render
            begin = time.perf_counter()
            text = real_build(job)
            durations.append(time.perf_counter() - begin)
            return text

        pane.build = gated_build
        pane.update_view(model, list(model.runs), set(model.runs))
        for _ in range(500):  # the worker starts from the event loop: yield to it (never block it here)
            if started.is_set():
                break
            await asyncio.sleep(0.01)
        assert started.is_set()
        await pilot.press("z")
        assert app.pings == 1 and "#1" not in shown(pane)
        gate.set()
        await settle(pilot)
        assert "#1 adam 1e-3" in shown(pane)
        assert durations and durations[0] < 2.0  # ~40 ms on the dev machine; loose for a loaded CI box


@run_async
async def test_requests_during_a_render_are_coalesced():
    """While a render runs, changes only mark the pane dirty; one render with the latest options follows."""
    model = make_model()
    app = PaneApp(CurvesPane)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", CurvesPane)
        gate = threading.Event()
        real_build = pane.build
        pane.build = lambda job: (gate.wait(10), real_build(job))[1]
        pane.update_view(model, list(model.runs), set(model.runs))
        await pilot.press("l", "m", "x")  # three option changes mid-render
        assert pane.render_count == 1
        gate.set()
        await settle(pilot)
        await settle(pilot)
        assert pane.render_count == 2
        heading = shown(pane).split("\n")[0]
        assert "log y" in heading and "ema 0.9" in heading and "epoch" in heading


@run_async
async def test_empty_selection_hint():
    model = make_model()
    app = PaneApp(DeadReluPane)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one("#pane", DeadReluPane)
        pane.update_view(model, [], set())
        await settle(pilot)
        assert "No runs to plot" in shown(pane)


# -- snapshots --------------------------------------------------------------------------------------------------

def snapshot_setup(pane_class):
    async def run_before(pilot) -> None:
        model = make_model(n_runs=6, n_points=300)
        pilot.app.query_one("#pane", pane_class).update_view(model, list(model.runs), set(model.runs))
        await settle(pilot)
    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
@pytest.mark.parametrize("pane_class", [CurvesPane, LRPane, DeadReluPane])
def test_pane_snapshot(snap_compare, pane_class, size):
    assert snap_compare(PaneApp(pane_class), terminal_size=size, run_before=snapshot_setup(pane_class))
