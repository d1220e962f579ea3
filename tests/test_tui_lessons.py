"""The lesson views of the dashboard (issue 11) on stores filled by REAL runs, driven by Textual's Pilot:
`mxdash run experiments/playground.toml` + `mxdash lrfind experiments/lr_sweep.toml` (conftest_lessons), and the
lr_sweep / dead_relu sweeps (conftest_tui.real_store), each trained once per session.

Every check reads the screen (the Rich Text a view shows) and compares it with what the store holds, read through
experiments.store's own API: the suggestion markers sit at the stored suggested LRs, in the optimizer's colour; the
boundary map's cells are the stored grid's classes; the confusion table's numbers are the stored matrix; the params
column is the summary's count; an event is marked at its step; the planned sweep is exactly the LRs around the
suggestions (checked by `mxdash run FILE --dry-run --json` on what would be launched); ctrl+t in Launch runs
`mxdash lrfind` for real."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest_lessons import real_lesson_store
from conftest_tui import copy_store, make_app, real_store, refresh, rendered, run_async, runs_view, settle
from experiments.annotations import annotations_for_run
from experiments.lesson_views import CLASS_COLOURS
from experiments.store import Store
from tui.grouping import OPTIMIZER_COLORS
from tui.plot import PALETTE
from tui.views.launch_plan import parse_overrides

pytest.importorskip("mxnet")

BIG = (160, 48)
PROJECT = Path(__file__).resolve().parent.parent
MXDASH = Path(sys.executable).with_name("mxdash")


class FakeRunner:
    """Stands in for subprocess.run: records the commands, answers like `mxdash run --detach --json`."""

    def __init__(self, stdout: str):
        self.calls: list[list[str]] = []
        self.stdout = stdout

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, self.stdout, "")


@pytest.fixture(scope="module")
def lessons(tmp_path_factory):
    return real_lesson_store(tmp_path_factory)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    return real_store(tmp_path_factory)


# -- reading the screen ----------------------------------------------------------------------------------------------
def pane(app, widget_id: str):
    return app.main.query_one(f"#{widget_id}").content


def lines_of(text) -> list:
    return text.split("\n", allow_blank=True)


def style_at(line, col: int) -> str:
    """The style of one character of a Rich Text line (the last span covering it wins, as Rich renders)."""
    styles = [str(span.style) for span in line.spans if span.start <= col < span.end]
    return styles[-1] if styles else ""


def axis_map(plain: str, log: bool):
    """column -> x value, fitted through the tick labels of the chart's x axis (the line with └)."""
    axis = next(line for line in plain.splitlines() if "└" in line)
    columns, values = [], []
    for match in re.finditer(r"-?\d[\d.]*(?:e-?\d+)?", axis):
        value = float(match.group())
        if log and value <= 0:
            continue
        columns.append(match.start() + (len(match.group()) - 1) / 2)
        values.append(math.log10(value) if log else value)
    slope, intercept = np.polyfit(columns, values, 1)
    return (lambda col: 10 ** (slope * col + intercept)) if log else (lambda col: slope * col + intercept), abs(slope)


def chart_of(text):
    """The chart's lines up to (and with) its x axis line."""
    lines = lines_of(text)
    end = next(i for i, line in enumerate(lines) if "└" in line.plain)
    return lines[: end + 1]


async def show(pilot, key: str) -> None:
    await pilot.press(key)
    await settle(pilot)


# -- LR range tests --------------------------------------------------------------------------------------------------
@run_async
async def test_range_test_markers_sit_at_the_stored_suggested_lrs_in_the_optimizers_colour(lessons):
    store = Store(lessons)
    tests = [run for run in store.list_runs() if run.get("kind") == "lrfind"]
    suggested = {run["optimizer"]: store.latest_artifact(run["id"], "lr_suggestion")["payload"]["lr"]
                 for run in tests}
    store.close()
    assert len(suggested) == 4 and all(suggested.values())
    app = make_app(lessons)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        runs_view(app).set_filter("exp:lr_sweep-lrfind")
        await settle(pilot)
        await show(pilot, "3")
        text = pane(app, "lr-pane")
        chart = chart_of(text)
        plain = "\n".join(line.plain for line in chart)
        to_lr, decades_per_col = axis_map(plain, log=True)
        for optimizer, lr in suggested.items():
            label = f"◆{lr:.3g}"
            found = [(line, line.plain.index(label)) for line in chart if label in line.plain]
            assert len(found) == 1, (optimizer, label, plain)
            line, col = found[0]
            # where the marker is, read back through the axis: within a cell and a half of the stored LR
            assert abs(math.log10(to_lr(col)) - math.log10(lr)) <= 1.5 * decades_per_col, (optimizer, to_lr(col), lr)
            assert PALETTE[OPTIMIZER_COLORS[optimizer]] in style_at(line, col), (optimizer, style_at(line, col))
            assert f"best LR {lr:.3g} ({optimizer})" in text.plain  # the event under the chart


@run_async
async def test_the_planned_sweep_is_exactly_the_lrs_around_the_suggestions(lessons, tmp_path):
    """`w` opens Launch with experiments/lr_sweep.toml and `--set` items; `mxdash run` (the real console script,
    --dry-run --json) plans from them exactly s/3, s, 3s (2 significant digits) of each optimizer's suggestion, and
    ctrl+l launches those very items detached."""
    store = Store(lessons)
    expected = set()
    for run in store.list_runs():
        if run.get("kind") == "lrfind":
            lr = store.latest_artifact(run["id"], "lr_suggestion")["payload"]["lr"]
            expected |= {(run["optimizer"], float(f"{lr * factor:.2g}")) for factor in (1 / 3, 1, 3)}
    store.close()
    runner = FakeRunner(stdout='{"experiment": "lr_sweep-2", "runs": []}')
    app = make_app(lessons, command_runner=runner)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        runs_view(app).set_filter("exp:lr_sweep-lrfind")
        await settle(pilot)
        await show(pilot, "3")
        await show(pilot, "w")
        view = app.main.query_one("#launch-view")
        assert app.main.active_tab == "launch"
        assert view.current.resolve() == (PROJECT / "experiments" / "lr_sweep.toml").resolve()
        overrides = parse_overrides(view.query_one("#launch-set").value)
        assert f"{len(expected)} runs" in rendered(view.query_one("#launch-preview"), 160)
        await pilot.press("ctrl+l")
        await settle(pilot)
    args = [str(MXDASH), "run", str(view.current), "--dry-run", "--json", "--runs-dir", str(tmp_path / "dry")]
    for item in overrides:
        args += ["--set", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=PROJECT)
    assert done.returncode == 0, done.stderr
    planned = {(run["optimizer"]["name"], run["optimizer"]["lr"]) for run in json.loads(done.stdout)["runs"]}
    assert planned == expected and len(json.loads(done.stdout)["runs"]) == len(expected)
    launched = runner.calls[-1]
    assert launched[launched.index("run") + 1] == str(view.current) and "--detach" in launched
    assert [launched[i + 1] for i, arg in enumerate(launched) if arg == "--set"] == overrides


@run_async
async def test_launch_starts_a_real_lr_range_test_and_shows_its_runs(tmp_path):
    """ctrl+t on experiments/lr_sweep.toml runs `mxdash lrfind` in its own process; the tests land in the store as
    runs of kind lrfind with a suggestion each, the Runs filter then shows them, LR effects draws them."""
    runs_dir = tmp_path / "runs"
    app = make_app(runs_dir)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await show(pilot, "6")
        view = app.main.query_one("#launch-view")
        view.show_file(PROJECT / "experiments" / "lr_sweep.toml")
        await settle(pilot)
        await pilot.press("ctrl+t")
        assert view.range_test is not None
        process = view.range_test[0]
        for _ in range(3000):  # until the process ended and the view reported it (the app's own records)
            if view.range_test is None:
                break
            await pilot.pause(0.1)
        assert view.range_test is None and process.returncode == 0
        await refresh(pilot)
        tests = [run for run in app.model.runs.values() if run.get("kind") == "lrfind"]
        assert len(tests) == 4 and {run["status"] for run in tests} == {"completed"}
        assert runs_view(app).filter.text == "exp:lr_sweep-lrfind-1"
        await show(pilot, "3")
        plain = pane(app, "lr-pane").plain
        assert "LR range test" in plain and plain.count("◆") >= 4
        assert "done" in rendered(view.query_one("#launch-file-result"), 160)


# -- decision boundaries ---------------------------------------------------------------------------------------------
def class_of(colour: str) -> tuple[int, float]:
    """(class, brightness factor) of a map colour `#rrggbb`: the class colour it is a multiple of."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    best = None
    for k, base in enumerate(CLASS_COLOURS[:3]):
        base = np.array(base, dtype=np.float64)
        factor = float(rgb @ base / (base @ base))
        error = float(np.abs(rgb - factor * base).max())
        if best is None or error < best[2]:
            best = (k, factor, error)
    return best[0], best[1]


def map_cells(line, cols: int) -> list[tuple[tuple[int, float], tuple[int, float]]]:
    cells = []
    for col in range(cols):
        match = re.match(r"(#[0-9a-f]{6}) on (#[0-9a-f]{6})", style_at(line, col))
        assert match and line.plain[col] == "▀", (col, style_at(line, col), line.plain[col])
        cells.append((class_of(match.group(1)), class_of(match.group(2))))
    return cells


@run_async
async def test_the_boundary_map_cells_are_the_stored_grids_classes_shaded_by_confidence(lessons):
    store = Store(lessons)
    latest = store.latest_artifact("playground-1.5", "boundary")
    store.close()
    pred, confidence = np.array(latest["payload"]["pred"]), np.array(latest["payload"]["confidence"])
    app = make_app(lessons)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.set_selected({"playground-1.5"})
        await show(pilot, "7")
        await show(pilot, "p")  # no training points over the map: every cell is the grid
        lines = lines_of(pane(app, "boundary-pane"))
        assert f"step {latest['step']}" in lines[1].plain
        rows, cols = pred.shape[0] // 2, pred.shape[1]  # one run at 160x48: the grid's own size, 48 x 24
        for line_index in range(rows):
            for col, (top, bottom) in enumerate(map_cells(lines[2 + line_index], cols)):
                for (cls, factor), row in ((top, 2 * line_index), (bottom, 2 * line_index + 1)):
                    assert cls == pred[row, col], (row, col)
                    sure = np.clip((confidence[row, col] - 100 / 3) / (100 - 100 / 3), 0, 1)
                    assert abs(factor - (0.3 + 0.7 * sure)) <= 0.1, (row, col, factor, confidence[row, col])
        assert lines[2 + rows].plain.strip() == ""  # nothing under the map


@run_async
async def test_boundaries_side_by_side_titled_by_what_differs_and_older_frames(lessons):
    store = Store(lessons)
    steps = [a["step"] for a in store.artifacts("playground-1.1", "boundary")]
    store.close()
    app = make_app(lessons)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        runs_view(app).set_filter("exp:playground")
        await settle(pilot)
        await show(pilot, "7")
        plain = pane(app, "boundary-pane").plain
        for width in (2, 4, 32):
            for activation in ("relu", "tanh"):
                assert plain.count(f"hidden={width} {activation} · step {steps[-1]}") == 1, plain[:600]
        assert "adam" not in plain  # the same in every run: not in the titles
        await show(pilot, "left")
        plain = pane(app, "boundary-pane").plain
        header, maps = plain.split("\n", 1)
        assert f"step {steps[-2]} (end: live)" in header and maps.count(f"· step {steps[-2]} ·") == 6
        await show(pilot, "end")
        assert "· live" in pane(app, "boundary-pane").plain


@run_async
async def test_a_new_frame_shows_live_read_incrementally(lessons, tmp_path):
    runs_dir = copy_store(lessons, tmp_path / "runs")
    app = make_app(runs_dir)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.set_selected({"playground-1.3"})
        await show(pilot, "7")
        await show(pilot, "p")
        log = app.model.artifacts["playground-1.3"]["boundary"]
        before = [frame.id for frame in log.items]
        tail = app.poller.artifacts.tails[("playground-1.3", "boundary")]
        store = Store(runs_dir)
        last = store.latest_artifact("playground-1.3", "boundary")
        payload = dict(last["payload"], pred=[[1] * 48 for _ in range(48)])  # every cell class 1 now
        store.append_artifacts("playground-1.3", [(last["step"] + 20, last["epoch"], last["wall"] + 1, "boundary",
                                                   payload)])
        store.close()
        await refresh(pilot)
        assert [frame.id for frame in log.items] == before + [app.poller.artifacts.tails[("playground-1.3",
                                                                                             "boundary")]]
        assert log.items[-1].id > tail  # only the new row was read and appended
        lines = lines_of(pane(app, "boundary-pane"))
        assert f"step {last['step'] + 20}" in lines[1].plain
        assert all(top[0] == 1 and bottom[0] == 1 for top, bottom in map_cells(lines[2], 48))


# -- confusion matrix, compare, params -------------------------------------------------------------------------------
@run_async
async def test_the_confusion_heat_table_shows_the_stored_matrix_and_per_class_scores(lessons):
    store = Store(lessons)
    latest = store.latest_artifact("playground-1.5", "confusion")
    store.close()
    scores, matrix = latest["payload"], latest["payload"]["matrix"]
    app = make_app(lessons)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.open_detail("playground-1.5")
        await settle(pilot)
        await pilot.press("right", "right", "right")
        await settle(pilot)
        assert app.screen.query_one("#detail-tabs").active == "detail-confusion"
        text = rendered(app.screen.query_one("#detail-confusion-body"), 150)
    assert f"epoch {latest['epoch']:g}" in text
    rows = [line for line in text.splitlines() if re.match(r"^\s*\d+(\s+\d+)+\s+\d\.\d{3}", line)]
    assert len(rows) == len(matrix), text
    for t, row in enumerate(matrix):
        numbers = rows[t].split()
        assert [int(v) for v in numbers[1:1 + len(row)]] == row, rows[t]
        # the per-class table beside it: class, precision, recall, F1, support, each from the matrix itself
        c, precision, recall, f1, support = numbers[1 + len(row):]
        true_total, predicted = sum(row), sum(r[t] for r in matrix)
        assert int(c) == t and int(support) == true_total
        assert float(precision) == pytest.approx(row[t] / predicted, abs=5e-4)
        assert float(recall) == pytest.approx(row[t] / true_total, abs=5e-4)
        assert float(f1) == pytest.approx(scores["f1"][t], abs=5e-4)
    assert f"macro F1 {sum(scores['f1']) / len(matrix):.4f}" in text


@run_async
async def test_compare_shows_macro_f1_and_params_and_the_runs_table_the_weights_count(lessons):
    store = Store(lessons)
    runs = store.list_runs(experiment="playground-1")
    f1 = {run["id"]: store.metrics_since(run["id"], keys=["val_macro_f1"])[-1][5] for run in runs}
    params = {run["id"]: run["summary"]["total_params"] for run in store.list_runs()}
    store.close()
    app = make_app(lessons)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        view = runs_view(app)
        assert "params" in view.keys
        at = view.keys.index("params")
        for run_id, count in params.items():
            assert str(view._cells[run_id][at]).strip() == f"{count:,}", run_id
        app.set_selected(set(f1))
        await show(pilot, "5")
        table = app.main.query_one("#compare-table")
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i)[1:] for i in range(table.row_count)}
        headers = app.main.query_one("#compare-view").run_headers()
        for index, run_id in enumerate(headers):
            assert str(rows["val macro F1"][index]) == f"{f1[run_id]:.4f}"
            assert str(rows["params"][index]) == f"{params[run_id]:,}"


# -- events on the plots ---------------------------------------------------------------------------------------------
@run_async
async def test_events_are_marked_at_their_step_on_dead_relus_and_curves(sweeps):
    """dead_relu-1.2 (a large LR): its first layer passes 40% dead, and its val loss turns up. Both events, as
    experiments/annotations.py finds them in the store, are listed under the plots and marked ◆ at their step."""
    store = Store(sweeps)
    events = annotations_for_run(store, store.get_run("dead_relu-1.2"))
    store.close()
    dead = next(e for e in events if e.kind == "dead_relu")
    rising = next(e for e in events if e.kind == "overfitting")
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.set_selected({"dead_relu-1.2"})
        for key, event in (("4", dead), ("2", rising)):
            await show(pilot, key)
            text = pane(app, {"4": "dead-pane", "2": "curves-pane"}[key])
            assert event.text in text.plain, (event.text, text.plain[-800:])
            chart = chart_of(text)
            to_step, steps_per_col = axis_map("\n".join(line.plain for line in chart), log=False)
            marks = [line.plain.index("◆") for line in chart if "◆" in line.plain and re.search(r"[│┤]", line.plain)]
            assert marks, text.plain
            assert min(abs(to_step(col) - event.step) for col in marks) <= 1.5 * steps_per_col, (marks, event.step)
