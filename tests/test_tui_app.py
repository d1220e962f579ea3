"""Dashboard tests: the model and poller on their own, then every view driven by Textual's Pilot on synthetic stores
(1,000 runs; 20 runs x 100k points; a store written to while the app runs). No mxnet: rows go straight into SQLite,
and subprocesses (launch, resume) are replaced by a fake runner that records the command."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest_tui import (FROZEN_NOW, make_app, make_store, refresh, rendered, run_async, runs_view, settle,
                          table_ids, wait_workers)
from experiments.config import plan_runs, read_experiment_file
from experiments.store import Store
from tui.cli_runner import launch_experiment, resume_run
from tui.model import DashboardModel, MetricBatch, MetricSeries
from tui.poller import BROKEN, MISSING, LogTail, Poller
from tui.views.runs import RunFilter

SMALL, WIDE = (80, 24), (120, 36)
_rendered = rendered


# -- helpers --------------------------------------------------------------------------------------------------------


class FakeRunner:
    """Stands in for subprocess.run: records commands, answers with a canned CompletedProcess."""

    def __init__(self, returncode=0, stdout="", stderr=""):
        self.calls: list[list[str]] = []
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


@pytest.fixture(scope="module")
def store_1000(tmp_path_factory) -> Path:
    """1,000 runs (50 experiments x 20 runs) with a few metric rows each."""
    return make_store(tmp_path_factory.mktemp("runs1000"), experiments=50, runs_per_experiment=20,
                      points_per_run=40, logs=False)


@pytest.fixture(scope="module")
def store_big(tmp_path_factory) -> Path:
    """20 runs x ~100k metric points (2M rows), the newest experiment partly running."""
    return make_store(tmp_path_factory.mktemp("runsbig"), experiments=1, runs_per_experiment=20,
                      points_per_run=100_000, running=0, logs=False)


@pytest.fixture
def small_store(tmp_path) -> Path:
    return make_store(tmp_path / "runs", experiments=2, runs_per_experiment=5, points_per_run=400, running=2)


@pytest.fixture
def runs_store(small_store) -> Path:
    """The store every-view tests run on. The lead can parametrize this with a store filled by real short runs
    (a `real_runs_dir` fixture) — the tests only assume run rows, metrics and log files as the workers write them."""
    return small_store


# -- model ----------------------------------------------------------------------------------------------------------
def test_metric_series_grows_amortised_and_exposes_float64_views():
    s = MetricSeries(capacity=4)
    capacities = set()
    for i in range(1000):
        s.append(i, i / 100, 1000.0 + i, None if i == 3 else float(i))
        capacities.add(s.capacity)
    assert len(s) == 1000 and len(capacities) <= 10  # doubling: a handful of reallocations
    for arr in (s.step, s.epoch, s.wall, s.value):
        assert arr.dtype == np.float64 and arr.shape == (1000,)
    assert np.isnan(s.value[3]) and s.value[999] == 999.0 and s.last() == 999.0


def test_metric_series_rewinds_when_a_resumed_run_records_steps_again():
    s = MetricSeries()
    s.extend([10, 20, 30, 40], [0, 0, 0, 0], [0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0])
    version = s.version
    s.extend([30, 40, 50], [0, 0, 0], [0, 0, 0], [3.5, 4.5, 5.5])  # resumed from a checkpoint at step 20
    assert s.step.tolist() == [10, 20, 30, 40, 50] and s.value.tolist() == [1.0, 2.0, 3.5, 4.5, 5.5]
    assert s.version > version


def test_model_apply_groups_rows_and_reports_changes():
    model = DashboardModel()
    rows = [(1, "a.1", 10, 0.1, 0.0, "train_loss", 2.0), (2, "a.1", 10, 0.1, 0.0, "lr", 0.1),
            (3, "a.2", 10, 0.1, 0.0, "train_loss", 3.0), (4, "a.1", 20, 0.2, 1.0, "train_loss", 1.5)]
    changes = model.apply(rows, [{"id": "a.1", "status": "running"}, {"id": "a.2", "status": "queued"}])
    assert changes.runs == {"a.1", "a.2"} and changes.series == {"a.1", "a.2"}
    assert model.series["a.1"]["train_loss"].value.tolist() == [2.0, 1.5]
    assert model.points == 4
    again = model.apply(None, [{"id": "a.1", "status": "running"}])  # an unchanged run row is not reported
    assert not again
    gone = model.apply(None, [], removed=["a.2"])
    assert gone.removed == {"a.2"} and "a.2" not in model.runs and "a.2" not in model.series
    assert model.points == 3
    reset = model.apply([(9, "a.1", 5, 0.0, 0.0, "lr", 0.2)], reset=True)  # the poller reads them afresh
    assert reset.series == {"a.1"} and model.points == 1 and model.series["a.1"]["lr"].value.tolist() == [0.2]


def test_model_caches_flat_configs_per_row():
    model = DashboardModel()
    model.apply(None, [{"id": "a.1", "config": {"net": {"activation": "relu"}}}])
    flat = model.flat("a.1")
    assert flat == {"net.activation": "relu"} and model.flat("a.1") is flat
    model.apply(None, [{"id": "a.1", "config": {"net": {"activation": "leaky_relu"}}}])
    assert model.flat("a.1") == {"net.activation": "leaky_relu"}


def test_metric_batch_matches_row_by_row_grouping():
    rng = np.random.default_rng(0)
    rows = [(i + 1, f"r.{i % 3}", i // 3, 0.0, float(i), ("loss", "lr", "dead/d0")[i % 2 + (i % 5 == 0)],
             float(rng.random())) for i in range(3000)]
    batch = MetricBatch.from_rows(rows)
    assert batch.max_id == 3000 and batch.rows == 3000
    for (run_id, key), (step, _epoch, wall, value) in batch.groups.items():
        expected = [r for r in rows if r[1] == run_id and r[5] == key]
        assert step.tolist() == [r[2] for r in expected]
        assert wall.tolist() == [r[4] for r in expected] and value.tolist() == [r[6] for r in expected]


# -- poller ---------------------------------------------------------------------------------------------------------
def test_poller_reads_only_what_changed(small_store):
    """Runs first; then only the history of the runs the views want, and new rows of those runs only."""
    poller = Poller(small_store, clock=lambda: FROZEN_NOW)
    first = poller.poll()  # a first page of the newest runs (here: all 10), nothing else
    assert first.first and len(first.run_rows) == 10 and first.batch.rows == 0 and first.more
    whole = poller.poll()  # then every run row once; no metric row (nothing wanted yet)
    assert len(whole.run_rows) == 10 and whole.batch.rows == 0 and not whole.more
    idle = poller.poll()
    assert idle.batch.rows == 0 and idle.run_rows == [] and not idle.more

    writer = Store(small_store)
    running = writer.list_runs(status="running")[0]["id"]
    other = writer.list_runs(status="completed")[0]["id"]
    assert poller.set_wanted([running])
    loaded = poller.poll()
    count = writer.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (running,)).fetchone()[0]
    assert loaded.loaded == [running] and loaded.batch.rows == count > 0
    assert {run_id for run_id, _ in loaded.batch.groups} == {running}
    assert not poller.poll().batch.rows  # caught up

    writer.append_metrics(running, [(999, 5.0, 9.0, "train_loss", 0.25)], {"step": 999, "train_loss": 0.25})
    writer.append_metrics(other, [(999, 5.0, 9.0, "train_loss", 0.5)], {"step": 999})
    update = poller.poll()
    assert sorted(r["id"] for r in update.run_rows) == sorted([running, other])
    assert update.batch.rows == 1 and (running, "train_loss") in update.batch.groups  # not the unwanted run's row
    assert isinstance(update.run_rows[0]["config"], dict)

    poller.set_wanted([running, other])  # wanted later: its whole history, the new row included, exactly once
    late = poller.poll()
    other_count = writer.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (other,)).fetchone()[0]
    assert late.loaded == [other] and late.batch.rows == other_count

    writer.request_stop(writer.list_runs(status="queued")[0]["id"])
    stopped = poller.poll()
    assert [r["status"] for r in stopped.run_rows] == ["stopped"]
    writer.delete_runs([stopped.run_rows[0]["id"]])
    gone = poller.poll()
    assert gone.removed == [stopped.run_rows[0]["id"]] and gone.reset  # ids may be reused after a delete


def test_poller_misses_no_row_when_ids_are_reused_after_gc(tmp_path):
    """After a gc the poller reads the wanted runs afresh (a store written before AUTOINCREMENT handed out the ids of
    deleted rows again), and a new run's rows are all read (issue 9)."""
    runs_dir = make_store(tmp_path / "runs", experiments=2, runs_per_experiment=2, points_per_run=200)
    writer = Store(runs_dir)
    newest = [run["id"] for run in writer.list_runs(experiment="lr_sweep-1")]
    poller = Poller(runs_dir, clock=lambda: FROZEN_NOW)
    poller.poll()
    keep = writer.list_runs(experiment="optimizers-1")[0]["id"]
    poller.set_wanted([keep])
    while poller.poll().more:
        pass
    top = writer.conn.execute("SELECT MAX(id) FROM metrics").fetchone()[0]
    writer.delete_runs(newest)  # gc: the rows with the highest ids go
    exp, (new_run,) = writer.create_experiment("again", None, {}, {}, [json.loads(writer.get_run(keep)["config"])
                                                                      if isinstance(writer.get_run(keep)["config"], str)
                                                                      else writer.get_run(keep)["config"]])
    poller.set_wanted([keep, new_run])
    result = poller.poll()
    assert result.reset
    writer.append_metrics(new_run, [(s, 0.0, float(s), "train_loss", 1.0 / s) for s in range(1, 301)])
    reused = writer.conn.execute("SELECT MIN(id) FROM metrics WHERE run_id = ?", (new_run,)).fetchone()[0]
    assert reused > top  # AUTOINCREMENT (schema 2): ids are never handed out again; the poller's reset stays the
    # defence for stores written before it
    model = DashboardModel()
    model.apply(None, writer.list_runs())
    model.apply(result.batch, reset=result.reset)
    while True:
        step = poller.poll()
        model.apply(step.batch, step.run_rows, step.removed, reset=step.reset)
        if not step.more:
            break
    assert len(model.series[new_run]["train_loss"]) == 300
    keep_rows = writer.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (keep,)).fetchone()[0]
    assert sum(len(s) for s in model.series[keep].values()) == keep_rows


def test_poller_says_why_a_store_cannot_be_read(tmp_path):
    """A 4 KB random mxdash.db, or a runs dir that is a file: the store's own message, state BROKEN."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "mxdash.db").write_bytes(np.random.default_rng(0).bytes(4096))
    result = Poller(runs_dir).poll()
    assert result.state == BROKEN and "mxdash.db" in result.message
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = Poller(not_a_dir).poll()
    assert result.state == BROKEN and "not a directory" in result.message


def test_poller_without_runs_dir_creates_nothing(tmp_path):
    missing = tmp_path / "nope"
    result = Poller(missing).poll()
    assert result.state == MISSING and "no runs directory" in result.message
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = Poller(empty).poll()
    assert result.state == MISSING and "holds no runs yet" in result.message
    assert list(empty.iterdir()) == []


def test_poller_accepts_a_fake_store():
    class FakeStore:
        def __init__(self):
            self.runs = [{"id": "x.1", "experiment_id": "x", "status": "running", "step": 1}]
            self.rows = [(1, "x.1", 1, 0.0, 0.0, "train_loss", 1.0)]

        def list_runs(self):
            return [dict(r) for r in self.runs]

        def metrics_since_all(self, after_id=0, run_ids=None):
            return [r for r in self.rows if r[0] > after_id]

    fake = FakeStore()
    poller = Poller("/unused", store_factory=lambda d: fake)
    assert [r["id"] for r in poller.poll().run_rows] == ["x.1"]
    second = poller.poll()
    assert second.batch.rows == 1 and second.run_rows == []
    fake.runs[0]["step"] = 2
    fake.rows.append((2, "x.1", 2, 0.0, 0.0, "train_loss", 0.5))
    third = poller.poll()
    assert third.run_rows[0]["step"] == 2 and third.batch.rows == 1


def test_log_tail_follows_appends(tmp_path):
    path = tmp_path / "log.txt"
    tail = LogTail(path)
    assert tail.read() == []
    path.write_text("one\ntwo\npart")
    assert tail.read() == ["one", "two"]
    with open(path, "a") as f:
        f.write("ial\nthree\n")
    assert tail.read() == ["partial", "three"]


def test_cli_commands_are_built_for_the_detached_scheduler(tmp_path):
    runner = FakeRunner(stdout='{"experiment": "optimizers-1", "runs": ["optimizers-1.1"]}\n')
    result = launch_experiment("experiments/optimizers.toml", tmp_path, parallel=2, overrides=["train.epochs=1"],
                               runner=runner)
    assert result.ok and result.payload["experiment"] == "optimizers-1"
    assert runner.calls[0] == [sys.executable, "-m", "experiments.cli", "run", "experiments/optimizers.toml",
                               "--detach", "--json", "--runs-dir", str(tmp_path), "--parallel", "2",
                               "--set", "train.epochs=1"]
    bad = launch_experiment("x.toml", tmp_path, runner=FakeRunner(2, "", "x.toml: no such experiment file"))
    assert not bad.ok and "no such experiment file" in bad.message
    resume = FakeRunner(stdout="resuming a.1, a.2 from the last checkpoint\n")
    assert resume_run(["a.1", "a.2"], tmp_path, runner=resume).ok
    assert resume.calls[0][3:] == ["resume", "a.1", "a.2", "--runs-dir", str(tmp_path)]


def test_run_filter_syntax():
    run = {"id": "optimizers-2.3", "experiment_id": "optimizers-2", "net": "mlp", "optimizer": "adam",
           "dataset": "digits", "status": "running"}
    assert RunFilter("").matches(run)
    assert RunFilter("adam").matches(run) and not RunFilter("sgd").matches(run)
    assert RunFilter("status:running,failed").matches(run) and not RunFilter("status:failed").matches(run)
    assert RunFilter("exp:optimizers-2 opt:ad").matches(run) and not RunFilter("exp:optimizers-1").matches(run)
    assert RunFilter("-status:completed").matches(run) and not RunFilter("-adam").matches(run)


# -- app: empty state -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [SMALL, WIDE])
@run_async
async def test_missing_runs_dir_opens_with_an_empty_state(tmp_path, size):
    missing = tmp_path / "runs"
    app = make_app(missing)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        view = runs_view(app)
        assert view.has_class("-empty")
        text = str(view.query_one("#runs-empty").render())
        assert "No runs yet" in text and "mxdash run experiments/optimizers.toml" in text
        for key in "234561":  # every view opens on an empty store
            await pilot.press(key)
            await pilot.pause()
        await pilot.press("q")
    assert not missing.exists()  # nothing is created until a launch


# -- app: 1,000 runs --------------------------------------------------------------------------------------------
@run_async
async def test_thousand_runs_table_filter_sort_select(store_1000):
    app = make_app(store_1000)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        assert len(app.model.runs) == 1000 and len(table_ids(app)) == 1000
        assert app.first_rows_at is not None
        view = runs_view(app)
        # newest experiment first (sorted by age), runs in grid order
        assert table_ids(app)[0] == "lr_sweep-13.1"

        await pilot.press("slash")
        await pilot.press(*"status:failed")
        await pilot.press("enter")
        failed = [rid for rid, r in app.model.runs.items() if r["status"] == "failed"]
        assert sorted(table_ids(app)) == sorted(failed) and len(failed) > 0
        view.set_filter("")
        await pilot.pause()
        assert len(table_ids(app)) == 1000

        view.set_sort("acc", reverse=True)
        await pilot.pause()
        accs = [app.model.runs[rid]["best_val_acc"] for rid in table_ids(app)]
        known = [a for a in accs if a is not None]
        assert known == sorted(known, reverse=True) and accs[: len(known)] == known  # unknown values last
        await pilot.press("o")  # the next sortable column on screen
        shown = [k for k in view.keys if k not in ("sel",)]
        assert view.sort_key == shown[(shown.index("acc") + 1) % len(shown)]

        table = view.table
        table.focus()
        table.move_cursor(row=0)
        first, second = table_ids(app)[:2]
        await pilot.press("space", "space")
        assert app.selected == {first, second}
        assert str(table.get_cell(first, "sel")) == "●"
        assert set(app.plot_selection()[0]) == {first, second}
        await pilot.press("n")  # select none
        assert app.selected == set()

        await pilot.press("enter")  # the highlighted row opens its detail screen
        await pilot.pause()
        assert type(app.screen).__name__ == "RunDetailScreen"
        await pilot.press("escape")
        assert app.screen is app.main


@run_async
async def test_header_click_sorts_and_toggles_direction(store_1000):
    app = make_app(store_1000)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        view = runs_view(app)
        view.table.post_message(view.table.HeaderSelected(view.table, view.table.columns["lr"].key, 5,
                                                          view.table.columns["lr"].label))
        await pilot.pause()
        assert view.sort_key == "lr" and not view.sort_reverse
        lrs = [app.model.runs[rid]["lr"] for rid in table_ids(app)]
        assert lrs == sorted(lrs)
        view.set_sort("lr")
        await pilot.pause()
        assert view.sort_reverse
        assert [app.model.runs[rid]["lr"] for rid in table_ids(app)] == sorted(lrs, reverse=True)


@pytest.mark.parametrize("size", [SMALL, WIDE])
@run_async
async def test_every_view_opens_with_1000_runs(store_1000, size):
    app = make_app(store_1000)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key, tab in zip("234561", ("curves", "lr", "dead", "compare", "launch", "runs")):
            await pilot.press(key)
            await settle(pilot)
            assert app.main.active_tab == tab
        keys = runs_view(app).keys
        assert len(keys) >= 7 and {"run", "status", "opt", "lr"} <= set(keys)  # even at 80 columns


def _table_lines(table) -> list[tuple]:
    return [tuple((seg.text, seg.style) for seg in table.render_line(y)) for y in range(table.size.height)]


@run_async
async def test_runs_table_caches_render_what_a_fresh_render_does(runs_store):
    """RunsTable keeps its render caches across tab switches, focus changes, re-sorts (only moved rows are
    re-rendered) and live row updates: after each step the cached lines equal a render from scratch."""
    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        view = runs_view(app)
        table = view.table
        writer = Store(runs_store)
        running = writer.list_runs(status="running")[0]["id"]
        loss = 5.0
        for key in ["o", "o", "2", "1", "o", "down", "O", "slash", "escape", "3", "1", "space", "o", "o", "O"]:
            loss = loss / 2
            writer.append_metrics(running, [(10_000, 20.0, FROZEN_NOW, "train_loss", loss)],
                                  {"step": 10_000, "train_loss": loss})
            await refresh(pilot)
            await pilot.press(key)
            await settle(pilot)
            if app.main.active_tab != "runs":
                continue
            cached = _table_lines(table)
            table.clear_render_caches()
            assert cached == _table_lines(table), f"stale table render after {key!r} (sort {view.sort_key})"
            func = view._sort_func(FROZEN_NOW)
            shown = [func(app.model.runs[rid]) for rid in table_ids(app)]
            assert shown == sorted(shown, reverse=view.sort_reverse)


# -- app: 20 runs x 100k points -------------------------------------------------------------------------------------
@run_async
async def test_big_series_load_in_chunks_and_reach_the_panes(store_big):
    app = make_app(store_big, chunk_rows=250_000)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot, rounds=400)
        total = Store(store_big).conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        assert app.model.points == total >= 1_500_000
        assert app.polls >= 1 + total // 250_000
        loss = app.model.series["optimizers-1.1"]["train_loss"]
        assert len(loss) > 20_000 and np.all(np.diff(loss.step) > 0)
        for key in "234":
            await pilot.press(key)
            await settle(pilot)
        start = time.perf_counter()
        await pilot.press("1", "down", "down", "space")
        await pilot.pause()
        assert time.perf_counter() - start < 2.0  # generous bound for a loaded CI machine; the bench measures


# -- app: live updates, actions -----------------------------------------------------------------------------------
@run_async
async def test_live_updates_reach_table_detail_and_log(runs_store):
    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        writer = Store(runs_store)
        running = writer.list_runs(status="running")[0]["id"]
        before = app.model.points
        runs_view(app).table.move_cursor(row=runs_view(app).table.get_row_index(running))
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert detail.run_id == running

        writer.append_metrics(running, [(9999, 7.5, FROZEN_NOW, "train_loss", 0.125)],
                              {"step": 9999, "train_loss": 0.125, "epoch": 7.5})
        with open(writer.log_path(running), "a") as f:
            f.write("step   9999  a new line from the worker\n")
        await refresh(pilot)
        assert app.model.points == before + 1
        assert app.model.runs[running]["train_loss"] == 0.125
        assert "0.125" in _rendered(detail.query_one("#detail-overview-body"), 120)
        detail._read_log()
        await wait_workers(app)
        await pilot.pause()
        log = detail.query_one("#detail-log-body")
        assert any("a new line from the worker" in line for line in log.lines)
        for key in ("right", "right", "right", "left"):
            await pilot.press(key)
        await pilot.press("escape")
        assert str(runs_view(app).table.get_cell(running, "loss")) == "0.1250"

        writer.finish_run(running, "completed")
        await refresh(pilot)
        assert str(runs_view(app).table.get_cell(running, "status")) == "completed"


@run_async
async def test_stop_asks_then_stops_queued_and_running(runs_store):
    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        store = Store(runs_store)
        running = store.list_runs(status="running")[0]["id"]
        queued = store.list_runs(status="queued")[0]["id"]
        app.set_selected({running, queued})
        await pilot.press("s")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("y")
        await wait_workers(app)
        await refresh(pilot)
        assert store.get_run(queued)["status"] == "stopped"
        assert store.get_run(running)["stop_requested"] == 1
        assert app.model.runs[queued]["status"] == "stopped"

        await pilot.press("s")  # a declined confirmation changes nothing
        await pilot.pause()
        if type(app.screen).__name__ == "ConfirmScreen":
            await pilot.press("n")
        assert app.screen is app.main


@run_async
async def test_resume_runs_the_cli_for_resumable_runs_only(runs_store):
    runner = FakeRunner(stdout="resuming ... from the last checkpoint\n")
    app = make_app(runs_store, command_runner=runner)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        resumable = [rid for rid, r in app.model.runs.items() if r["status"] in ("stopped", "failed", "lost")]
        completed = [rid for rid, r in app.model.runs.items() if r["status"] == "completed"]
        app.set_selected(set(resumable[:2]) | set(completed[:1]))
        await pilot.press("r")
        await wait_workers(app)
        await pilot.pause()
        assert len(runner.calls) == 1
        cmd = runner.calls[0]
        assert cmd[:4] == [sys.executable, "-m", "experiments.cli", "resume"]
        assert sorted(cmd[4:-2]) == sorted(resumable[:2]) and cmd[-2:] == ["--runs-dir", str(runs_store)]


@run_async
async def test_compare_shows_differing_config_and_final_metrics(runs_store):
    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        chosen = ["optimizers-1.1", "optimizers-1.2", "optimizers-1.3"]  # finished runs, with dead/* metrics
        app.set_selected(set(chosen))
        await pilot.press("5")
        await settle(pilot)
        view = app.main.query_one("#compare-view")
        assert view.run_headers() == chosen  # run ids as headers
        table = view.query_one("#compare-table")
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "optimizer.name" in labels and "best val acc" in labels and "final dead/dense0" in labels
        names = [str(table.get_row_at(labels.index("optimizer.name"))[i + 1]) for i in range(3)]
        assert names == ["sgd", "momentum", "nesterov"]


# -- app: launch ----------------------------------------------------------------------------------------------------
EXPERIMENT = """
[experiment]
name = "tiny"
description = "two optimizers, two learning rates"
[net]
name = "mlp"
[train]
epochs = 1
[grid]
"optimizer.name" = ["sgd", "adam"]
"optimizer.lr" = [0.1, 0.01]
"""


@pytest.fixture
def experiments_dir(tmp_path) -> Path:
    d = tmp_path / "experiments"
    d.mkdir()
    (d / "tiny.toml").write_text(EXPERIMENT)
    (d / "broken.toml").write_text("[grid\n")
    return d


@run_async
async def test_launch_file_preview_and_start(tmp_path, experiments_dir):
    runs_dir = tmp_path / "runs"
    runner = FakeRunner(stdout='{"experiment": "tiny-1", "runs": ["tiny-1.1", "tiny-1.2", "tiny-1.3", "tiny-1.4"]}')
    app = make_app(runs_dir, command_runner=runner, experiments_dir=experiments_dir)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        app.open_launch(experiments_dir / "tiny.toml")
        await pilot.pause()
        preview = _rendered(app.main.query_one("#launch-preview"))
        assert "tiny" in preview and "4 runs" in preview and "optimizer.lr" in preview
        app.main.query_one("#launch-set").value = "train.epochs=2"
        app.main.query_one("#launch-parallel").value = "2"
        await pilot.pause()
        await pilot.press("ctrl+l")  # launching goes through the app's (injected) command runner
        await wait_workers(app)
        await pilot.pause()
        cmd = runner.calls[0]
        assert cmd[3:5] == ["run", str(experiments_dir / "tiny.toml")]
        assert "--detach" in cmd and "--json" in cmd and cmd[cmd.index("--parallel") + 1] == "2"
        assert cmd[cmd.index("--set") + 1] == "train.epochs=2"
        assert "started tiny-1" in _rendered(app.main.query_one("#launch-file-result"))

        app.open_launch(experiments_dir / "broken.toml")
        await pilot.pause()
        assert "invalid TOML" in _rendered(app.main.query_one("#launch-preview"), 300)


@run_async
async def test_launch_shows_the_cli_validation_error(tmp_path, experiments_dir):
    runner = FakeRunner(2, "", "tiny.toml: net.name: unknown net 'mlpx' (available: cnn, lstm, mlp)")
    app = make_app(tmp_path / "runs", experiments_dir=experiments_dir, command_runner=runner)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        app.open_launch(experiments_dir / "tiny.toml")
        await pilot.pause()
        app.main.query_one("#launch-view").action_launch()
        await wait_workers(app)
        await pilot.pause()
        assert "unknown net 'mlpx'" in _rendered(app.main.query_one("#launch-file-result"))


@run_async
async def test_launch_form_writes_a_toml_and_launches_it(tmp_path, experiments_dir):
    runs_dir = tmp_path / "runs"
    runner = FakeRunner(stdout='{"experiment": "formtest-1", "runs": ["formtest-1.1"]}')
    app = make_app(runs_dir, experiments_dir=experiments_dir, command_runner=runner)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("6")
        view = app.main.query_one("#launch-view")
        view.query_one("#launch-files").highlighted = 0  # "+ new (form)"
        await pilot.pause()
        assert view.query_one("#launch-right").current == "launch-form"
        view.query_one("#form-name").value = "formtest"
        view.query_one("#form-lrs").value = "0.1, 0.01"
        view.query_one("#form-epochs").value = "2"
        await pilot.pause()
        assert "4 runs" in _rendered(view.query_one("#launch-form-preview"))  # sgd, adam x 2 lrs
        view.action_launch()
        await wait_workers(app)
        await pilot.pause()
    written = runs_dir / "launched" / "formtest.toml"
    raw = read_experiment_file(written)
    runs = plan_runs(raw, written)
    assert len(runs) == 4 and {r["optimizer"]["name"] for r in runs} == {"sgd", "adam"}
    assert {r["optimizer"]["lr"] for r in runs} == {0.1, 0.01} and runs[0]["train"]["epochs"] == 2
    assert runner.calls[0][4] == str(written)


# -- app: palette, machine status, detail on every store -----------------------------------------------------------
@run_async
async def test_command_palette_lists_actions_and_runs(runs_store):
    from tui.commands import MxdashCommands

    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        provider = MxdashCommands(app.screen)
        names = [hit.text async for hit in provider.discover()]
        assert "Stop selected runs" in names and "View: Curves" in names
        hits = [hit async for hit in provider.search("status failed")]
        assert hits
        hits[0].command()
        await pilot.pause()
        assert runs_view(app).filter.text == "status:failed"
        run_id = sorted(app.model.runs)[0]
        hits = [hit async for hit in provider.search(f"open run {run_id}")]
        assert any(run_id in str(hit.match_display) for hit in hits)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert "CommandPalette" in type(app.screen).__name__
        await pilot.press("escape")


@run_async
async def test_machine_status_in_the_top_bar(runs_store):
    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        text = str(app.main.query_one("#machine-status").render())
        assert "CPU" in text and "37%" in text and "GPU0" in text


@run_async
async def test_real_machine_probe_runs_without_gpus():
    from tui.machine import MachineProbe

    status = MachineProbe()()
    assert 0 <= status.cpu <= 100 * 64 and status.mem_total > 0


@pytest.mark.parametrize("size", [SMALL, WIDE])
@run_async
async def test_detail_of_every_status(runs_store, size):
    app = make_app(runs_store)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for run_id, run in list(app.model.runs.items()):
            app.open_detail(run_id)
            await pilot.pause()
            body = _rendered(app.screen.query_one("#detail-overview-body"), 120)
            assert run_id in body and run["status"] in body
            if run.get("error"):
                assert run["error"][:20] in body
            if run.get("summary"):
                assert "dense0" in _rendered(app.screen.query_one("#detail-net-body"), 120)
            await pilot.press("escape")


# -- exit, first paint, unreadable stores ---------------------------------------------------------------------
@run_async
async def test_messages_arriving_while_the_app_exits_do_not_crash(runs_store):
    """A machine probe or poll finishing after the screens are gone used to query `self.screen` on an empty
    stack (ScreenStackError; it failed a test under load)."""
    from tui.app import MachineUpdated, Polled
    from tui.poller import PollResult

    app = make_app(runs_store)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        status = app.machine_probe()
        await pilot.press("q")
    assert not app.screen_stack
    app.on_machine_updated(MachineUpdated(status))
    app.on_polled(Polled(PollResult()))
    app.replan()


@run_async
async def test_first_paint_says_the_store_is_being_read_not_that_it_is_empty(runs_store):
    """While the first read is still running (a busy machine: seconds), the Runs view says so; "No runs yet" is
    for a store that has none."""
    import threading

    release = threading.Event()

    def slow_store(runs_dir):
        release.wait(30)
        return Store(runs_dir)

    app = make_app(runs_store, store_factory=slow_store)
    async with app.run_test(size=SMALL) as pilot:
        for _ in range(20):
            await pilot.pause()
        text = rendered(runs_view(app).query_one("#runs-empty"))
        assert "Reading the store" in text and "No runs yet" not in text
        release.set()
        await settle(pilot)
        assert len(table_ids(app)) == 10 and not runs_view(app).has_class("-empty")


@pytest.mark.parametrize("size", [SMALL, WIDE])
@run_async
async def test_an_unreadable_store_shows_its_error_and_suggests_nothing_that_fails(tmp_path, size):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "mxdash.db").write_bytes(np.random.default_rng(1).bytes(4096))  # 4 KB of noise
    app = make_app(runs_dir)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        text = rendered(runs_view(app).query_one("#runs-empty"), size[0])
        assert "Cannot read the store" in text and "mxdash.db" in text
        assert "No runs yet" not in text and "mxdash run" not in text
        assert "unreadable" in str(app.main.query_one("#topbar-live").render())
        for key in "234561":  # every view still opens
            await pilot.press(key)
            await settle(pilot)


@run_async
async def test_stale_runs_are_shown_stale_in_table_and_detail(tmp_path):
    """A running run whose training loop stopped advancing (experiments.metrics.display_status) reads `stale`,
    in its own colour, in the table, the top bar and the detail."""
    from experiments.metrics import STALE_AFTER_S
    from tui.status import STALE_STYLE

    runs_dir = make_store(tmp_path / "runs", experiments=1, runs_per_experiment=3, points_per_run=100, running=2)
    store = Store(runs_dir)
    running = [run["id"] for run in store.list_runs(status="running")]
    fresh, frozen = running
    late = FROZEN_NOW - STALE_AFTER_S - 30
    fields = {"started": late} if "progress_at" not in store.get_run(frozen) else {"progress_at": late}
    store.update_run(frozen, **fields)
    app = make_app(runs_dir)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = runs_view(app).table
        cell = table.get_cell(frozen, "status")
        assert str(cell) == "stale" and str(cell.style) == STALE_STYLE
        assert str(table.get_cell(fresh, "status")) == "running"
        assert "1 stale" in str(app.main.query_one("#topbar-counts").render())
        app.open_detail(frozen)
        await settle(pilot)
        assert "no training progress" in rendered(app.screen.query_one("#detail-overview-body"), 120)


# -- keys -------------------------------------------------------------------------------------------------------
CHARACTER_KEYS = {"question_mark", "slash", "left_square_bracket", "right_square_bracket", "space"}


@run_async
async def test_no_key_means_two_things_on_one_screen_and_every_key_is_in_the_palette(runs_store):
    """Across all the views of the main screen a letter means one thing (`x` was "clear selection" in Runs and "X
    axis" in Curves), and every key of the focused view is also a palette command."""
    from tui.commands import MxdashCommands

    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        meanings: dict[str, set[str]] = {}
        for tab in "234561":
            await pilot.press(tab)
            await settle(pilot)
            for key, active in app.screen.active_bindings.items():
                if (len(key) == 1 or key in CHARACTER_KEYS) and active.binding.description:
                    meanings.setdefault(key, set()).add(active.binding.description)
            names = [hit.text async for hit in MxdashCommands(app.screen).discover()]
            for key, active in app.screen.active_bindings.items():
                binding = active.binding
                if binding.description and not binding.system and not binding.action.startswith("show_tab"):
                    assert any(name.startswith(binding.description) for name in names), (tab, key)
        doubled = {key: names for key, names in meanings.items() if len(names) > 1}
        assert not doubled, doubled


@run_async
async def test_a_palette_key_command_runs_the_views_action(runs_store):
    from tui.commands import MxdashCommands

    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        view = app.main.query_one("#curves-pane")
        hits = [hit async for hit in MxdashCommands(app.screen).search("Log y")]
        assert hits
        await hits[0].command()
        await settle(pilot)
        assert view.log_y


@run_async
async def test_launch_form_default_writes_the_file_its_preview_planned_and_mxdash_run_accepts_it(
        tmp_path, experiments_dir):
    """The form's default state (sgd and adam ticked, LR list empty: a section axis of {name, lr} tables) once
    wrote `optimizer = ["{'name': 'sgd', ...}"]`, which `mxdash run` rejects, under a preview that looked fine.
    Now the file is tomli-w's, byte for byte the text the preview planned, and the real console script accepts it."""
    runs_dir = tmp_path / "runs"
    runner = FakeRunner(stdout='{"experiment": "dashboard-1", "runs": []}')
    app = make_app(runs_dir, experiments_dir=experiments_dir, command_runner=runner)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        view = app.main.query_one("#launch-view")
        view.query_one("#launch-files").highlighted = 0  # "+ new (form)", as it opens
        await settle(pilot)
        planned_text, (_, planned_runs, _) = view._form_text, view._planned
        preview = rendered(view.query_one("#launch-form-preview"), 120)
        assert "2 runs" in preview and "sgd" in preview and "adam" in preview
        view.action_launch()
        await wait_workers(app)
        await pilot.pause()
    written = runs_dir / "launched" / "dashboard.toml"
    assert written.read_text() == planned_text
    assert plan_runs(read_experiment_file(written), written) == planned_runs
    assert [r["optimizer"]["name"] for r in planned_runs] == ["sgd", "adam"]
    mxdash = Path(sys.executable).with_name("mxdash")
    done = subprocess.run([str(mxdash), "run", str(written), "--dry-run", "--runs-dir", str(tmp_path / "dry")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "2 runs" in done.stdout and not (tmp_path / "dry").exists()


@run_async
async def test_a_poll_that_changes_no_width_asks_for_no_layout(runs_store):
    """New metrics of a running run change the loss cell, not the size of anything: the top bar and the Runs status
    line repaint in place (or not at all). A layout request re-arranges and repaints the whole screen, and did so on
    every poll, while a key press waited behind it."""
    from textual.widget import Widget

    app = make_app(runs_store)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        writer = Store(runs_store)
        running = writer.list_runs(status="running")[0]["id"]
        step = writer.get_run(running)["step"] or 0
        layouts = []
        real_refresh = Widget.refresh

        def recording(self, *regions, repaint=True, layout=False, recompose=False):
            if layout and self.id in ("topbar-counts", "topbar-live", "machine-status", "runs-info"):
                layouts.append(self.id)
            return real_refresh(self, *regions, repaint=repaint, layout=layout, recompose=recompose)

        Widget.refresh = recording
        try:
            for i in range(1, 4):
                writer.append_metrics(running, [(step + i, 1.0, FROZEN_NOW, "train_loss", 0.5 + i / 100)],
                                      {"step": step + i, "train_loss": 0.5 + i / 100})
                await refresh(pilot)
                assert app.model.runs[running]["train_loss"] == 0.5 + i / 100
        finally:
            Widget.refresh = real_refresh
        assert layouts == []
        before_end = str(app.main.query_one("#topbar-counts").render())
        # a text of another width is still shown (with a layout): the counts lose "1 running" when the run ends
        writer.finish_run(running, "completed")
        await refresh(pilot)
        assert app.model.runs[running]["status"] == "completed"
        assert str(app.main.query_one("#topbar-counts").render()) != before_end, before_end
