"""The Launch view's defects found in a user trial, each driven as the user drove it (Textual's Pilot, keys), on the
shipped experiment files and a synthetic store of LR range tests (conftest_lessons.make_lesson_store, no mxnet):

- the `--set` items `w` plans belong to the experiment they were planned for: another file shows its own runs
  (the field is per file), and they carry no range-test value (the tests start at lr 1e-07);
- enter on the file list goes to the `--set` field (what one types next), the focused field's row is marked, and
  the parallel field takes 1..runs only, with a message naming the field;
- a malformed override is named as typed (`--set "train.epochs600"`), not as a key of the file;
- escape from a field goes back to the list, ctrl+l and ctrl+t work from inside the fields."""
from __future__ import annotations

import re
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from conftest_lessons import make_lesson_store
from conftest_tui import make_app, rendered, run_async, runs_view, settle, wait_workers
from experiments.config import ConfigError, apply_overrides, plan_runs, read_experiment_file
from tui.sweep import sweep_overrides
from tui.views.launch_plan import parse_overrides

PROJECT = Path(__file__).resolve().parent.parent
SHIPPED = PROJECT / "experiments"
BIG = (160, 48)
TINY = """
[experiment]
name = "tiny"
[net]
name = "mlp"
[train]
epochs = 1
[grid]
"optimizer.name" = ["sgd", "adam"]
"optimizer.lr" = [0.1, 0.01]
"""


class FakeRunner:
    """Stands in for subprocess.run: records the commands, answers like `mxdash run --detach --json`."""

    def __init__(self, stdout: str = '{"experiment": "x-1", "runs": []}'):
        self.calls: list[list[str]] = []
        self.stdout = stdout

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, self.stdout, "")


class FakeProcess:
    """A `mxdash lrfind` that is still running."""

    def poll(self):
        return None


class FakeStarter:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        return FakeProcess()


@pytest.fixture
def experiments_dir(tmp_path) -> Path:
    d = tmp_path / "experiments"
    d.mkdir()
    (d / "tiny.toml").write_text(TINY)
    return d


def runs_of(path: Path, overrides=()) -> int:
    return len(plan_runs(apply_overrides(read_experiment_file(path), list(overrides), path), path))


def set_items(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]


async def highlight(pilot, view, path: Path) -> None:
    """Move the file list's cursor to `path` with the arrow keys, as a user does."""
    options = view.query_one("#launch-files")
    options.focus()
    await pilot.pause()
    target = next(i for i in range(options.option_count) if options.get_option_at_index(i).id == str(path))
    while options.highlighted != target:
        await pilot.press("down" if (options.highlighted or 0) < target else "up")
    await settle(pilot)


@asynccontextmanager
async def launch_view_on(app, path: Path):
    """The app running at BIG with the Launch view open on `path`: yields (pilot, view)."""
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.open_launch(path)
        await settle(pilot)
        yield pilot, app.main.query_one("#launch-view")


# -- 1. the planned sweep's --set items belong to its experiment -------------------------------------------------
def test_the_sweeps_overrides_carry_no_range_test_value():
    """The range tests' optimizers start at lr 1e-07: fixing the file's lr axis must not write that value."""
    path = SHIPPED / "lr_sweep.toml"
    grid = read_experiment_file(path)["grid"]
    tests = [({"name": "sgd", "lr": 1e-07}, 0.13), ({"name": "adam", "lr": 1e-07}, 0.005)]
    overrides = sweep_overrides(grid, tests)
    assert not any("1e-07" in item for item in overrides), overrides
    runs = plan_runs(apply_overrides(read_experiment_file(path), overrides, path), path)
    assert [(run["optimizer"]["name"], run["optimizer"]["lr"]) for run in runs] == \
        [("sgd", 0.043), ("sgd", 0.13), ("sgd", 0.39), ("adam", 0.0017), ("adam", 0.005), ("adam", 0.015)]


@run_async
async def test_the_sweep_planned_by_w_stays_with_its_experiment(tmp_path):
    runs_dir = make_lesson_store(tmp_path / "runs")
    runner = FakeRunner()
    app = make_app(runs_dir, command_runner=runner)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        runs_view(app).set_filter("exp:lr_sweep-lrfind")
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        view = app.main.query_one("#launch-view")
        field = view.query_one("#launch-set")
        assert view.current.resolve() == (SHIPPED / "lr_sweep.toml").resolve()
        planned = parse_overrides(field.value)
        assert "12 runs" in rendered(view.query_one("#launch-preview"), 160)
        assert "1e-07" not in field.value, field.value

        weights = next(p for p in app.experiment_files() if p.stem == "weights")
        await highlight(pilot, view, weights)
        assert view.current == weights
        assert field.value == ""  # the sweep's items stay with lr_sweep
        assert f"weights  {runs_of(weights)} runs" in rendered(view.query_one("#launch-preview"), 160)
        await pilot.press("ctrl+l")
        await wait_workers(app)
        await settle(pilot)
        assert runner.calls[-1][runner.calls[-1].index("run") + 1] == str(weights)
        assert set_items(runner.calls[-1]) == []

        lr_sweep = next(p for p in app.experiment_files() if p.stem == "lr_sweep")
        await highlight(pilot, view, lr_sweep)
        assert parse_overrides(field.value) == planned  # back on lr_sweep: its sweep again
        assert "12 runs" in rendered(view.query_one("#launch-preview"), 160)
        await pilot.press("enter", *"train.epochs=2")  # to the field, where the keys add an item to the sweep
        await settle(pilot)
        assert parse_overrides(field.value) == planned + ["train.epochs=2"]
        preview = rendered(view.query_one("#launch-preview"), 160)
        assert "12 runs" in preview and re.search(r"train\.epochs +2 *\n", preview), preview


# -- 2. keyboard focus and the parallel field ------------------------------------------------------------------
@run_async
async def test_enter_on_the_list_goes_to_the_set_field_and_marks_it(tmp_path, experiments_dir):
    runner = FakeRunner()
    app = make_app(tmp_path / "runs", command_runner=runner, experiments_dir=experiments_dir)
    async with launch_view_on(app, experiments_dir / "tiny.toml") as (pilot, view):
        view.query_one("#launch-files").focus()
        await pilot.pause()
        set_label, parallel_label = (view.query_one(f"#{wid}").parent.query_one(".form-label")
                                     for wid in ("launch-set", "launch-parallel"))
        unfocused = set_label.rich_style
        assert parallel_label.rich_style == unfocused
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is view.query_one("#launch-set")
        await pilot.press(*"train.epochs=2")
        await settle(pilot)
        assert view.query_one("#launch-set").value == "train.epochs=2"
        assert view.query_one("#launch-parallel").value == ""
        # the focused field's row is marked: its label looks unlike the other rows' labels
        assert set_label.rich_style != unfocused and parallel_label.rich_style == unfocused
        view.query_one("#launch-parallel").focus()
        await pilot.pause()
        assert parallel_label.rich_style != unfocused and set_label.rich_style == unfocused


def test_check_parallel():
    from tui.views.launch_plan import check_parallel  # new with the fix

    assert check_parallel("", 4) is None  # auto
    assert check_parallel(" 3 ", 4) == 3
    for bad in ("0", "600", "x", "-1"):
        with pytest.raises(ValueError, match=r"parallel"):
            check_parallel(bad, 4)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        check_parallel("600", 4)


@run_async
async def test_parallel_takes_only_one_to_the_number_of_runs(tmp_path, experiments_dir):
    runner = FakeRunner()
    app = make_app(tmp_path / "runs", command_runner=runner, experiments_dir=experiments_dir)
    async with launch_view_on(app, experiments_dir / "tiny.toml") as (pilot, view):
        view.query_one("#launch-parallel").focus()
        await pilot.press(*"600")
        await settle(pilot)
        result = rendered(view.query_one("#launch-file-result"), 160)
        assert "parallel" in result and "1..4" in result  # said as it is typed
        assert view.query_one("#launch-parallel").has_class("-invalid")
        await pilot.press("ctrl+l")
        await wait_workers(app)
        await settle(pilot)
        assert runner.calls == []  # 600 parallel runs of 4: not launched
        assert "1..4" in rendered(view.query_one("#launch-file-result"), 160)
        await pilot.press("backspace", "backspace", "ctrl+l")  # 6 of 4: still no
        await wait_workers(app)
        await settle(pilot)
        assert runner.calls == [] and view.query_one("#launch-parallel").has_class("-invalid")
        await pilot.press("backspace")  # empty: auto
        await settle(pilot)
        assert not view.query_one("#launch-parallel").has_class("-invalid")
        assert "1..4" not in rendered(view.query_one("#launch-file-result"), 160)
        await pilot.press("2", "ctrl+l")
        await wait_workers(app)
        await settle(pilot)
        assert len(runner.calls) == 1 and runner.calls[0][runner.calls[0].index("--parallel") + 1] == "2"


# -- 3. a malformed override is named as typed -------------------------------------------------------------------
def test_a_malformed_override_is_named_as_typed():
    path = SHIPPED / "optimizers.toml"
    with pytest.raises(ConfigError) as e:
        parse_overrides("train.epochs=3 16", path)
    assert '--set "16": expects key=value' in str(e.value) and ": 16:" not in str(e.value)
    with pytest.raises(ConfigError, match=r'--set "train=3": keys are section.key'):
        parse_overrides("train=3", path)
    assert parse_overrides("train.epochs=3 'net.hidden=[8, 8]'", path) == ["train.epochs=3", "net.hidden=[8, 8]"]


@run_async
async def test_the_preview_names_the_malformed_override(tmp_path):
    app = make_app(tmp_path / "runs")
    async with launch_view_on(app, SHIPPED / "optimizers.toml") as (pilot, view):
        view.query_one("#launch-set").focus()
        await pilot.press(*"train.epochs600")
        await settle(pilot)
        preview = rendered(view.query_one("#launch-preview"), 200)
        assert '--set "train.epochs600": expects key=value' in preview, preview


# -- escape, ctrl+l and ctrl+t from inside the fields ----------------------------------------------------------
@run_async
async def test_escape_and_the_launch_keys_from_inside_the_fields(tmp_path, experiments_dir):
    runner, starter = FakeRunner(), FakeStarter()
    app = make_app(tmp_path / "runs", command_runner=runner, process_starter=starter,
                   experiments_dir=experiments_dir)
    async with launch_view_on(app, experiments_dir / "tiny.toml") as (pilot, view):
        for field in ("#launch-set", "#launch-parallel"):
            view.query_one(field).focus()
            await pilot.press("escape")
            await pilot.pause()
            assert app.focused is view.query_one("#launch-files"), field
        view.query_one("#launch-set").focus()
        await pilot.press(*"train.epochs=2", "ctrl+l")
        await wait_workers(app)
        await settle(pilot)
        assert set_items(runner.calls[-1]) == ["train.epochs=2"]
        view.query_one("#launch-set").focus()
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert starter.calls and "lrfind" in starter.calls[-1] and view.range_test is not None
