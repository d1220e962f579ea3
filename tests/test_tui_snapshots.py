"""Snapshot tests (pytest-textual-snapshot) of every main screen at 80x24 and 160x48 on a deterministic store.

Deterministic: a synthetic store with fixed timestamps, a frozen clock for ages and durations, a fixed machine
probe, TZ=UTC, and relative paths (the app runs in a temporary working directory with `runs/` and
`experiments/` inside). Update after an intended UI change with `pytest tests/test_tui_snapshots.py
--snapshot-update` and look at the SVGs in tests/__snapshots__/test_tui_snapshots/.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest_tui import FROZEN_NOW, FixedProbe, make_store, settle
from tui.app import MxdashApp

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
EXPERIMENT = """\
[experiment]
name = "lr_sweep"
description = "SGD and Adam over three learning rates"
[net]
name = "mlp"
hidden = [64, 64]
[train]
epochs = 5
[grid]
"optimizer.name" = ["sgd", "adam"]
"optimizer.lr" = [0.1, 0.01, 0.001]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "lr_sweep.toml").write_text(EXPERIMENT)
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def store(workdir) -> Path:
    make_store(workdir / "runs", experiments=3, runs_per_experiment=5, points_per_run=400, running=2)
    return Path("runs")


def app_for(runs_dir) -> MxdashApp:
    return MxdashApp(runs_dir, clock=lambda: FROZEN_NOW, machine_probe=FixedProbe(), poll_interval=30.0,
                     experiments_dir=Path("experiments"))


def keys_then_settle(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_runs_view(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=keys_then_settle())


@pytest.mark.parametrize("size", SIZES)
def test_runs_view_selected_and_filtered(snap_compare, store, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("space", "down", "space")
        pilot.app.set_runs_filter("-status:queued")
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail(snap_compare, store, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_detail("optimizers-1.4")  # a failed run: error and traceback
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)


def test_run_detail_net(snap_compare, store):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_detail("optimizers-1.1")
        await settle(pilot)
        await pilot.press("right", "right")
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compare(snap_compare, store, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.set_selected({"optimizers-1.1", "optimizers-1.4", "optimizers-1.5"})
        await pilot.press("5")
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_launch_file_preview(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=keys_then_settle("6"))


def test_launch_form(snap_compare, store):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("6", "up")
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=(160, 48), run_before=run_before)


def test_stop_confirmation(snap_compare, store):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.set_selected({"dead_relu-1.1", "dead_relu-1.2"})  # the two running runs
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(app_for(store), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_empty_state(snap_compare, workdir, size):
    assert snap_compare(app_for(Path("runs")), terminal_size=size, run_before=keys_then_settle())


# -- the comparison views --------------------------------------------------------------------------------------------
def filtered_then(filter_text: str, *keys: str, select=()):
    async def run_before(pilot) -> None:
        await settle(pilot)
        if filter_text:
            pilot.app.set_runs_filter(filter_text)
            await settle(pilot)
        if select:
            pilot.app.set_selected(set(select))
            await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_curves(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=filtered_then("exp:lr_sweep", "2"))


@pytest.mark.parametrize("size", SIZES)
def test_curves_crosshair_zoomed(snap_compare, store, size):
    run_before = filtered_then("exp:lr_sweep", "2", "right", "right", "left_square_bracket", "down")
    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_lr_effects(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=filtered_then("", "3"))


@pytest.mark.parametrize("size", SIZES)
def test_dead_relus(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=filtered_then("exp:optimizers", "4"))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, store, size):
    assert snap_compare(app_for(store), terminal_size=size, run_before=filtered_then("", "2", "question_mark"))


@pytest.mark.parametrize("size", SIZES)
def test_unreadable_store(snap_compare, workdir, size):
    (workdir / "runs").mkdir()
    (workdir / "runs" / "mxdash.db").write_bytes(bytes(range(256)) * 16)  # 4 KB that is not a database
    assert snap_compare(app_for(Path("runs")), terminal_size=size, run_before=keys_then_settle())


# -- the lesson views (issue 11): LR range tests, decision boundaries, confusion matrices ---------------------------
@pytest.fixture
def lesson_store(workdir) -> Path:
    from conftest_lessons import make_lesson_store

    make_lesson_store(workdir / "runs")
    return Path("runs")


@pytest.mark.parametrize("size", SIZES)
def test_lr_range_tests(snap_compare, lesson_store, size):
    """Smoothed loss against LR per range test, each suggestion marked ◆ and labelled, the events under it."""
    assert snap_compare(app_for(lesson_store), terminal_size=size,
                        run_before=filtered_then("exp:lr_sweep-lrfind", "3"))


@pytest.mark.parametrize("size", SIZES)
def test_boundaries(snap_compare, lesson_store, size):
    """Four maps side by side (hidden x activation), titled by what differs, training points over them."""
    assert snap_compare(app_for(lesson_store), terminal_size=size, run_before=filtered_then("exp:playground", "7"))


@pytest.mark.parametrize("size", SIZES)
def test_boundaries_older_frame_without_points(snap_compare, lesson_store, size):
    run_before = filtered_then("exp:playground", "7", "left", "left", "p")
    assert snap_compare(app_for(lesson_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail_confusion(snap_compare, lesson_store, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_detail("playground-1.3")
        await settle(pilot)
        await pilot.press("right", "right", "right")
        await settle(pilot)

    assert snap_compare(app_for(lesson_store), terminal_size=size, run_before=run_before)


def test_compare_macro_f1_and_params(snap_compare, lesson_store):
    assert snap_compare(app_for(lesson_store), terminal_size=(160, 48),
                        run_before=filtered_then("exp:playground", "5"))


def test_runs_view_params_and_range_tests(snap_compare, lesson_store):
    assert snap_compare(app_for(lesson_store), terminal_size=(160, 48), run_before=keys_then_settle())


def test_launch_sweep_around_the_suggestions(snap_compare, lesson_store):
    run_before = filtered_then("exp:lr_sweep-lrfind", "3", "w")
    assert snap_compare(app_for(lesson_store), terminal_size=(160, 48), run_before=run_before)
