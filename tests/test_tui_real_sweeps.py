"""The comparison views on stores filled by real runs of the shipped sweeps (experiments/lr_sweep.toml, and
experiments/dead_relu.toml twice: seeds 0 and 1), trained once per session by the real engine (conftest_tui).

What a user must be able to read at a glance: the loss axis of the lr_sweep stays in the finite part, the wall axis
starts at 0 in seconds, a config value has one colour in every tab, the filter decides what is plotted, the cursor
keeps its run, and runs that differ only by seed draw one mean line with a band."""
from __future__ import annotations

import re
import time

import pytest

from conftest_tui import copy_store, make_app, real_store, refresh, rendered, run_async, runs_view, settle, table_ids
from experiments.store import Store

pytest.importorskip("mxnet")

BIG = (160, 48)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    return real_store(tmp_path_factory)


# -- reading charts back ------------------------------------------------------------------------------------------
SUFFIX = {"k": 1e3, "M": 1e6, "G": 1e9}


def number(label: str) -> float:
    label = label.strip()
    if label and label[-1] in SUFFIX:
        return float(label[:-1]) * SUFFIX[label[-1]]
    return float(label)


def pane_text(app, tab: str):
    """The Rich Text a plot view shows."""
    return app.main.query_one(f"#{tab}-pane").content


def y_ticks(plain: str) -> list[float]:
    """Every y tick label of every chart in a pane (`  2.0┤`)."""
    return [number(m.group(1)) for m in re.finditer(r"(?m)^ *(-?[0-9.]+(?:e-?\d+)?[kMG]?)┤", plain)]


def x_tick_lines(plain: str) -> list[str]:
    return [line for line in plain.splitlines() if "└" in line]


def x_ticks(line: str) -> list[float]:
    after = line.split("└", 1)[1]
    return [number(tok) for tok in after.split() if re.fullmatch(r"-?[0-9.]+(?:e-?\d+)?[kMG]?", tok)]


def legend_colors(text) -> list[tuple[str, str]]:
    """(label, colour) of each legend entry `━ label` in a chart's Rich Text (colour of the swatch cell)."""
    plain = text.plain
    entries = []
    for match in re.finditer(r"[━▬] ([^━▬╍×●•\n]+?)(?=  |\n|$)", plain):
        at = match.start()
        styles = [str(span.style) for span in text.spans if span.start <= at < span.end]
        entries.append((match.group(1).strip(), styles[-1] if styles else ""))
    return entries


async def show(pilot, tab_key: str) -> None:
    await pilot.press(tab_key)
    await settle(pilot)


async def filter_runs(pilot, text: str) -> None:
    runs_view(pilot.app).set_filter(text)
    await settle(pilot)


# -- Curves --------------------------------------------------------------------------------------------------------
@run_async
async def test_lr_sweep_loss_axis_stays_in_the_finite_part(sweeps):
    """Diverged runs (losses up to ~1e10) must not stretch the axis: every tick stays near the chance-level loss
    (ln 10 = 2.3), with log y too; `f` shows the full range, and the diverged runs are marked ×."""
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep")
        await show(pilot, "2")
        plain = pane_text(app, "curves").plain
        loss_chart = plain.split("val accuracy")[0]
        ticks = y_ticks(loss_chart)
        assert ticks and max(ticks) <= 4.0, ticks
        assert loss_chart.count("×") >= 10  # the 10 diverged runs, each marked where it diverged
        await pilot.press("l")  # log y: still the readable range
        await settle(pilot)
        ticks = y_ticks(pane_text(app, "curves").plain.split("val accuracy")[0])
        assert ticks and max(ticks) <= 4.0, ticks
        await pilot.press("l", "f")  # full range on demand
        await settle(pilot)
        assert max(y_ticks(pane_text(app, "curves").plain.split("val accuracy")[0])) > 1e6


@run_async
async def test_wall_axis_starts_at_zero_in_seconds(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep")
        await show(pilot, "2")
        await pilot.press("x", "x")
        await settle(pilot)
        plain = pane_text(app, "curves").plain
        assert "wall (s)" in plain
        longest = max(float(s.wall[-1]) for rid in app.model.runs if rid.startswith("lr_sweep")
                      for s in [app.model.series[rid]["train_loss"]])
        for line in x_tick_lines(plain):
            ticks = x_ticks(line)
            assert ticks and ticks[0] == 0 and max(ticks) <= longest * 1.01, line


@run_async
async def test_adam_has_one_colour_in_curves_lr_effects_and_legends(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep")
        await show(pilot, "2")
        curves = [(label, color) for label, color in legend_colors(pane_text(app, "curves")) if "adam" in label]
        assert curves and len({color for _, color in curves}) == 1, curves
        await show(pilot, "3")
        lr = [(label, color) for label, color in legend_colors(pane_text(app, "lr")) if "adam" in label]
        assert lr and {color for _, color in lr} == {curves[0][1]}, (curves, lr)
        others = {color for label, color in legend_colors(pane_text(app, "lr")) if "adam" not in label}
        assert curves[0][1] not in others  # and no other optimizer shares it


@run_async
async def test_the_filter_decides_what_is_plotted(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep opt:adam,sgd")
        shown = table_ids(app)
        assert len(shown) == 14
        plotted, title = app.plot_selection()
        assert sorted(plotted) == sorted(shown) and "filter" in title
        await show(pilot, "2")
        plain = pane_text(app, "curves").plain
        assert "momentum" not in plain and "rmsprop" not in plain and "adam" in plain and "sgd" in plain
        app.set_selected({shown[0]})  # a selection wins over the filter
        await settle(pilot)
        assert app.plot_selection()[0] == [shown[0]]


@run_async
async def test_a_seed_group_draws_one_mean_line_with_a_band(sweeps):
    """dead_relu-1.1 and dead_relu-2.1 differ only by train.seed: with the colour key on the activation they draw
    one mean line (one legend entry saying 2 seeds) and a min-max band around it."""
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        app.set_selected({"dead_relu-1.1", "dead_relu-2.1", "dead_relu-1.3", "dead_relu-2.3"})
        await show(pilot, "2")
        text = pane_text(app, "curves")
        legend = legend_colors(text)
        assert len(legend) == 2 and all("2 seeds" in label for label, _ in legend), legend
        band_cells = [span for span in text.spans if "band" in str(span.style) or str(span.style).endswith(" dim")]
        assert band_cells  # the band is drawn (dim cells of the group colour)


# -- Runs table ----------------------------------------------------------------------------------------------------
@run_async
async def test_cursor_stays_on_its_run_when_rows_are_inserted_above(sweeps, tmp_path):
    runs_dir = copy_store(sweeps, tmp_path / "runs")
    app = make_app(runs_dir)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        view = runs_view(app)
        table = view.table
        table.focus()
        table.move_cursor(row=table.get_row_index("lr_sweep-1.17"))
        await pilot.pause()
        assert view.cursor_run_id() == "lr_sweep-1.17"
        store = Store(runs_dir)  # a new experiment: newest first, so its rows go above the cursor
        raw = store.get_experiment("dead_relu-1")["config"]
        configs = [run["config"] for run in store.list_runs(experiment="dead_relu-1")]
        store.create_experiment("dead_relu", None, raw, {}, configs)
        await refresh(pilot)
        assert table_ids(app)[0].startswith("dead_relu-3")
        assert view.cursor_run_id() == "lr_sweep-1.17"
        await pilot.press("space")  # acts on the run the cursor shows
        assert "lr_sweep-1.17" in app.selected


@run_async
async def test_runs_table_shows_and_filters_varying_grid_keys(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:dead_relu-1")
        view = runs_view(app)
        assert any("activation" in key for key in view.keys), view.keys
        cells = {rid: [str(c) for c in view._cells[rid]] for rid in table_ids(app)}
        assert "leaky_relu" in cells["dead_relu-1.3"] and "relu" in cells["dead_relu-1.1"]
        cases = {"lr:0.01": 8, "leaky": 4, "lr<0.1 exp:dead_relu": 4, "net.activation=leaky_relu": 4,
                 "optimizer=adam,sgd": 14, "activation=relu exp:dead_relu-1": 2}
        for text, expected in cases.items():
            await filter_runs(pilot, text)
            shown = table_ids(app)
            assert len(shown) == expected, (text, shown)


# -- LR effects, Dead ReLUs, Compare -----------------------------------------------------------------------------
@run_async
async def test_lr_effects_marks_measured_lrs_and_labels_each_best_lr(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep")
        await show(pilot, "3")
        plain = pane_text(app, "lr").plain
        assert "applied LR" not in plain  # every run kept a constant LR: no schedule plot
        for optimizer, best in (("adam", "0.01"), ("sgd", "0.1"), ("momentum", "0.1"), ("rmsprop", "0.01")):
            assert f"{optimizer} {best}" in plain or f"{optimizer} best {best}" in plain, (optimizer, plain)
        # a marker at every measured LR of every optimizer (18 finite runs; points with the same LR and nearly the same
        # loss, e.g. sgd and momentum at 1e-4, share a cell)
        assert plain.count("•") + plain.count("●") >= 12
        assert plain.count("×") >= 10  # each diverged run visible, not stacked under another


@run_async
async def test_dead_relu_view_names_configs_and_says_stuck_negative(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:dead_relu-1")
        await show(pilot, "4")
        plain = pane_text(app, "dead").plain
        assert "leaky_relu" in plain and "lr=0.2" in plain  # legends say which config
        assert "stuck negative" in plain
        levels = re.findall(r"\d+%", plain)
        assert len(set(levels)) >= 7  # a heatmap scale of at least 8 levels, labelled in percent


@run_async
async def test_compare_has_run_id_headers_and_reaches_every_run_at_80x24(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await filter_runs(pilot, "exp:lr_sweep")
        app.set_selected(set(table_ids(app)))
        await show(pilot, "5")
        view = app.main.query_one("#compare-view")
        headers = view.run_headers()
        assert len(headers) == 28 and "lr_sweep-1.28" in headers


# -- keys ----------------------------------------------------------------------------------------------------------
@run_async
async def test_question_mark_lists_every_key_of_the_view(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        await show(pilot, "2")
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        text = app.screen.help_text()
        for key in ("left", "[", "]", "g", "x", "l", "m", "f"):
            assert key in text, key
        await pilot.press("escape")
        assert app.screen is app.main


@run_async
async def test_every_view_on_real_runs(sweeps):
    """What the real workers wrote reaches every view: series, legends, the net summary, versions."""
    app = make_app(sweeps)
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot)
        assert len(app.model.runs) == 36
        assert all(row["status"] in ("completed", "diverged") for row in app.model.runs.values())
        await filter_runs(pilot, "exp:dead_relu-1")
        series = app.model.series["dead_relu-1.1"]
        assert {"train_loss", "lr", "val_acc", "dead/hidden0", "dead/hidden2"} <= set(series)
        await show(pilot, "2")
        curves = pane_text(app, "curves").plain
        assert "relu" in curves and "leaky_relu" in curves  # legends name what differs between the runs
        await show(pilot, "3")
        assert "No LR axis" not in pane_text(app, "lr").plain
        await show(pilot, "4")
        dead = pane_text(app, "dead").plain
        assert "hidden0" in dead and "hidden2" in dead
        app.set_selected({"dead_relu-1.1", "dead_relu-1.2"})
        await show(pilot, "5")
        view = app.main.query_one("#compare-view")
        table = view.query_one("#compare-table")
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "optimizer.lr" in labels and "final dead/hidden0" in labels
        await pilot.press("1")
        app.open_detail("dead_relu-1.2")
        await settle(pilot)
        assert "hidden0" in rendered(app.screen.query_one("#detail-net-body"), 160)  # the real net summary
        overview = rendered(app.screen.query_one("#detail-overview-body"), 160)
        assert "dead_relu-1.2" in overview and "mxnet" in overview  # versions recorded by the worker
