"""tui/views/ (Curves, LR effects, Dead ReLUs): the pure builders on deterministic data (the real DashboardModel),
then each view in a tiny Textual app: off-thread renders, change detection, keys, crosshair, zoom, snapshots."""
from __future__ import annotations

import asyncio
import functools
import threading
import time

import numpy as np
import pytest
from textual.app import App, ComposeResult

from tui.grouping import format_value
from tui.model import DashboardModel, MetricBatch
from tui.selection import PlotState
from tui.views.base import PlotView, ViewJob
from tui.views.curves import CurvesView, build_curves
from tui.views.dead_relu import DeadReluView, build_dead
from tui.views.lr_effects import LrEffectsView, build_lr

CurvesPane, LRPane, DeadReluPane, PlotPane = CurvesView, LrEffectsView, DeadReluView, PlotView

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
            "train_loss": None if diverged else 0.3, "best_val_acc": 0.9, "val_acc": 0.9,
            "config": {"optimizer": {"name": optimizer, "lr": lr}, "train": {"seed": 0}},
        })
    return rows


def metric_groups(row: dict, n_points: int, seed: int) -> dict:
    """train_loss/lr every 10 steps, val per "epoch", dead/<layer> every 50 steps (large LR kills dense1)."""
    rng = np.random.default_rng(seed)
    step = np.arange(n_points, dtype=np.float64) * 10
    epoch = step / (10 * max(1, n_points // 5))
    wall = step * 0.01  # seconds since the run started
    loss = 2.3 * np.exp(-step / (3 * step[-1] / 4 + 1)) + 0.1 * rng.standard_normal(n_points) + 0.3
    if row["status"] == "diverged":
        loss[40:] = np.nan
    groups = {
        (row["id"], "train_loss"): (step, epoch, wall, loss),
        (row["id"], "lr"): (step, epoch, wall, row["lr"] * (0.5 + 0.5 * np.cos(np.pi * step / step[-1]))),
    }
    epochs = np.arange(1, 6, dtype=np.float64)
    val_step = epochs * step[-1] / 5
    groups[(row["id"], "val_loss")] = (val_step, epochs, val_step * 0.01, 1.5 / epochs + 0.2)
    groups[(row["id"], "val_acc")] = (val_step, epochs, val_step * 0.01, 0.9 - 0.4 / epochs)
    probe = step[::5]
    for k, layer in enumerate(LAYERS):
        dead = np.full(len(probe), 0.05 * k)
        if row["lr"] >= 0.1 and layer == "dense1":
            dead[probe >= 300] = 0.9
        groups[(row["id"], f"dead/{layer}")] = (probe, probe / 100, probe * 0.01, dead)
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
    batch = MetricBatch(groups={(run_id, key): (step, step / 100, step * 0.01, np.full(n, 0.4))}, max_id=0, rows=n)
    model.apply(batch, [])


def run_async(test):
    """Run an `async def` test with asyncio.run (no pytest-asyncio here); parametrize still injects arguments."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


class PaneApp(App):
    """One pane filling the screen, plus an app key that proves the UI thread is free."""

    BINDINGS = [("z", "ping", "Ping")]  # z is no plot view key

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

def plan_for(model, selected=None, **state):
    """The plot plan the app would make for these runs (all of them by default)."""
    plot_state = PlotState()
    for name, value in state.items():
        setattr(plot_state, name, value)
    return plot_state.make_plan(model, list(model.runs) if selected is None else selected, "filter")


CURVE_OPTIONS = {"x": "step", "log_y": False, "smoothing": 0.6, "full_range": False}
LR_OPTIONS = {"metric": "val loss", "log_y": False, "full_range": False}
DEAD_OPTIONS = {"heatmaps_only": False}


def job_for(model, view_class, options, width=100, height=30, selected=None, crosshair=None, zoom=(0.0, 1.0),
            **state):
    view = view_class()
    view.model, view.plan = model, plan_for(model, selected, **state)
    return ViewJob(width, height, dict(options), view.snapshot(), view.plan.title, color_key=view.plan.color_key,
                   crosshair=crosshair, zoom=zoom)


def test_format_value():
    assert [format_value(v) for v in (1e-3, 3e-4, 0.01, 0.1, 1.0, [64, 64], True)] == \
        ["1e-3", "3e-4", "0.01", "0.1", "1", "64x64", "true"]


@pytest.mark.parametrize("width, height", [(80, 18), (200, 55), (30, 8)])
def test_builders_fill_exactly_the_pane(width, height):
    model = make_model()
    for crosshair in (None, 0.5):
        curves = build_curves(job_for(model, CurvesView, CURVE_OPTIONS, width, height, crosshair=crosshair))
        lr = build_lr(job_for(model, LrEffectsView, LR_OPTIONS, width, height, crosshair=crosshair))
        dead = build_dead(job_for(model, DeadReluView, DEAD_OPTIONS, width, height, crosshair=crosshair))
        for text in (curves, lr, dead):
            lines = text.plain.split("\n")
            assert len(lines) == height and all(len(line) == width for line in lines)


def test_curves_show_runs_divergence_and_validation():
    model = make_model(n_runs=8)
    text = build_curves(job_for(model, CurvesView, dict(CURVE_OPTIONS, x="epoch", log_y=True, smoothing=0.9),
                                160, 40)).plain
    assert "adam lr=1e-3" in text and "sgd lr=1e-3" in text
    assert "val" in text and "val accuracy" in text and "diverged" in text
    assert "×" in text.split("\n", 2)[2]  # runs 7 and 8 (lr 1) diverged: NaN tail
    assert "log y" in text and "ema 0.9" in text and "epoch" in text


def test_curves_crosshair_reads_every_run_at_one_step_and_zoom_narrows_the_axis():
    model = make_model(n_runs=4, n_points=200)
    text = build_curves(job_for(model, CurvesView, CURVE_OPTIONS, 160, 40, crosshair=0.5)).plain
    readout = next(line for line in text.splitlines() if line.startswith("step "))
    assert "│" in readout and readout.count("━") == 4  # one reading per shown run
    assert text.count("┊") >= 10  # the crosshair line through the charts
    full = build_curves(job_for(model, CurvesView, CURVE_OPTIONS, 160, 40)).plain
    zoomed = build_curves(job_for(model, CurvesView, CURVE_OPTIONS, 160, 40, zoom=(0.25, 0.5))).plain
    last_tick = lambda plain: [t for t in plain.splitlines() if "└" in t][0].split()[-2]  # noqa: E731
    assert float(last_tick(zoomed)) < float(last_tick(full)) and "zoom" in zoomed


def test_curves_colour_by_key_and_hidden_runs():
    model = make_model(n_runs=8)
    job = job_for(model, CurvesView, CURVE_OPTIONS, 160, 40)
    by_optimizer = {unit.label.split()[0]: unit.color for unit in job.units}
    assert len({unit.color for unit in job.units}) == 2 and by_optimizer["adam"] != by_optimizer["sgd"]
    hidden = job_for(model, CurvesView, CURVE_OPTIONS, 160, 40, hidden={"sweep-1.1"})
    assert [u.hidden for u in hidden.units][0] and not any(u.hidden for u in hidden.units[1:])
    by_lr = job_for(model, CurvesView, CURVE_OPTIONS, 160, 40, color_key="optimizer.lr")
    assert len({unit.color for unit in by_lr.units}) == len(LRS)


def test_lr_chart_marks_best_lr_and_diverged_runs():
    model = make_model(n_runs=8)
    text = build_lr(job_for(model, LrEffectsView, LR_OPTIONS, 120, 36)).plain
    assert "adam best" in text and "sgd best" in text and "diverged" in text
    assert text.count("●") >= 2 and text.count("×") >= 2  # a best LR per optimizer; both lr=1 runs diverged
    assert "applied LR" in text  # the runs' LR follows a cosine schedule
    assert "1e-3" in text


def test_lr_pane_without_lr_axis_says_so():
    model = make_model(n_runs=2)  # both at lr 1e-3
    text = build_lr(job_for(model, LrEffectsView, LR_OPTIONS, 100, 30)).plain
    assert "No LR axis" in text


def test_dead_pane_shows_killed_layer():
    model = make_model(n_runs=6)
    text = build_dead(job_for(model, DeadReluView, DEAD_OPTIONS, 120, 60, selected=["sweep-1.5"])).plain
    assert "dense1 >50% at step 300" in text
    assert "█" in text and "dense0" in text


def test_dead_pane_without_probes_and_empty_selection():
    model = make_model(n_runs=2)
    for key in [k for k in model.series["sweep-1.1"] if k.startswith("dead/")]:
        del model.series["sweep-1.1"][key]
    assert "No dead-ReLU probe data" in build_dead(job_for(model, DeadReluView, DEAD_OPTIONS, 80, 20,
                                                           selected=["sweep-1.1"])).plain
    assert "No runs to plot" in build_curves(job_for(model, CurvesView, CURVE_OPTIONS, 80, 20, selected=[])).plain


# -- widgets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pane_class, expected", [
    (CurvesPane, ["adam lr=1e-3", "sgd lr=0.01", "val accuracy"]),
    (LRPane, ["adam", "sgd", "best", "applied LR"]),
    (DeadReluPane, ["dead ReLU fraction", "dense1"]),
])
@run_async
async def test_pane_renders_legend_off_thread(pane_class, expected):
    model = make_model()
    app = PaneApp(pane_class)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", PlotPane)
        pane.update_view(model, plan_for(model), set(model.runs))
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
        plan = plan_for(model)
        pane.update_view(model, plan, set(selected))
        await settle(pilot)
        assert pane.render_count == 1
        pane.update_view(model, plan, set())  # nothing changed
        pane.update_view(model, plan_for(model), set(selected))  # "changed" but the data is identical
        pane.update_view(model, plan, {"other-run"})  # a run that is not shown
        await settle(pilot)
        assert pane.render_count == 1
        append_points(model, "sweep-1.1", "dead/dense0")  # a series this pane does not draw
        pane.update_view(model, plan, {"sweep-1.1"})
        assert pane.render_count == 1
        append_points(model, "sweep-1.1", "train_loss")
        pane.update_view(model, plan, {"sweep-1.1"})
        await settle(pilot)
        assert pane.render_count == 2
        pane.update_view(model, plan_for(model, selected[:2]), set())  # selection changed
        await settle(pilot)
        assert pane.render_count == 3
        assert "adam lr=0.01" not in shown(pane)


@run_async
async def test_toggles_rerender():
    model = make_model()
    app = PaneApp(CurvesPane)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one("#pane", CurvesPane)
        pane.update_view(model, plan_for(model), set(model.runs))
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
        await pilot.press("f")
        await settle(pilot)
        assert "full y" in shown(pane).split("\n")[0]
        assert pane.render_count == 5
        await pilot.press("right", "left_square_bracket")  # crosshair on, zoom in around it
        await settle(pilot)
        assert pane.crosshair == 0.5 and pane.zoom == (0.25, 0.75) and "zoom" in shown(pane)
        await pilot.press("right_square_bracket", "escape")
        await settle(pilot)
        assert pane.zoom == (0.0, 1.0) and pane.crosshair is None


@run_async
async def test_resize_rerenders_to_the_new_size():
    model = make_model()
    app = PaneApp(LRPane)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one("#pane", LRPane)
        pane.update_view(model, plan_for(model), set(model.runs))
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
        pane.update_view(model, plan_for(model), set(model.runs))
        for _ in range(500):  # the worker starts from the event loop: yield to it (never block it here)
            if started.is_set():
                break
            await asyncio.sleep(0.01)
        assert started.is_set()
        await pilot.press("z")
        assert app.pings == 1 and "adam" not in shown(pane)
        gate.set()
        await settle(pilot)
        assert "adam lr=1e-3" in shown(pane)
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
        pane.update_view(model, plan_for(model), set(model.runs))
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
        pane.update_view(model, plan_for(model, []), set())
        await settle(pilot)
        assert "No runs to plot" in shown(pane)


# -- snapshots --------------------------------------------------------------------------------------------------

def snapshot_setup(pane_class):
    async def run_before(pilot) -> None:
        model = make_model(n_runs=6, n_points=300)
        pilot.app.query_one("#pane", pane_class).update_view(model, plan_for(model), set(model.runs))
        await settle(pilot)
    return run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("pane_class", [CurvesPane, LRPane, DeadReluPane])
def test_pane_snapshot(snap_compare, pane_class, size):
    assert snap_compare(PaneApp(pane_class), terminal_size=size, run_before=snapshot_setup(pane_class))
