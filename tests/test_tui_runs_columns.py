"""The Runs table's columns as a user trial read them at 80x24 and 160x48 (defects found on /tmp/trial-runs).

A synthetic store shaped like that trial: two LR range tests whose ids differ only near the end
(`lr_sweep-lrfind-1.N`, `lr_sweep-lrfind-2.N`) and a playground grid (hidden x activation, adam at lr 0.01 for all,
a 2-D dataset that has no `as_images`), one run with a blown-up loss of 6.12e9. What must hold: every id readable
whole (or shortened in the middle, never losing the run number), the keys that vary kept before the ones that do not,
no cell cut by the column, headers that say what they are, and a filter change that never hides the first rows.
"""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest_tui import make_app, make_store, run_async, runs_view, settle, table_ids

SMALL, WIDE = (80, 24), (160, 48)
SIZES = [pytest.param(SMALL, id="80x24"), pytest.param(WIDE, id="160x48")]
HUGE_LOSS = 6.12e9


def _playground_config(hidden: int, activation: str) -> dict:
    return {"experiment": {"name": "playground", "description": "2-D spiral"},
            "data": {"name": "spiral", "val_fraction": 0.2, "seed": 0, "n_samples": 1500, "noise": 0.2},
            "net": {"name": "mlp", "hidden": [hidden], "activation": activation},
            "optimizer": {"name": "adam", "lr": 0.01, "wd": 0.0},
            "train": {"epochs": 10, "batch_size": 64, "seed": 0}}  # as the others


@pytest.fixture
def trial_store(tmp_path):
    """lr_sweep-lrfind-1 (4 runs), lr_sweep-lrfind-2 (4 runs), playground-3 (6 runs: hidden 2/4/32 x relu/tanh)."""
    runs_dir = make_store(tmp_path / "runs", experiments=3, runs_per_experiment=6, points_per_run=0, logs=False)
    conn = sqlite3.connect(runs_dir / "mxdash.db")
    renames = {"optimizers-1": "lr_sweep-lrfind-1", "lr_sweep-1": "lr_sweep-lrfind-2", "dead_relu-1": "playground-3"}
    with conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        for old, new in renames.items():
            conn.execute("UPDATE experiments SET id = ? WHERE id = ?", (new, old))
            for run_id, idx, config in conn.execute("SELECT id, idx, config FROM runs WHERE experiment_id = ?",
                                                    (old,)).fetchall():
                config = json.loads(config)
                if new.startswith("lr_sweep-lrfind") and idx > 4:
                    conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                    continue
                loss = None
                if new == "playground-3":
                    config = _playground_config((2, 4, 32)[(idx - 1) // 2], ("relu", "tanh")[(idx - 1) % 2])
                    loss = HUGE_LOSS if idx == 1 else 0.05 * idx
                else:
                    config["data"]["as_images"] = new.endswith("-2")  # a key that varies where it is set
                    config["train"]["seed"] = 0
                conn.execute("UPDATE runs SET id = ?, experiment_id = ?, config = ?, optimizer = ?, lr = ?, net = ?,"
                             " train_loss = COALESCE(?, train_loss) WHERE id = ?",
                             (f"{new}.{idx}", new, json.dumps(config), config["optimizer"]["name"],
                              config["optimizer"]["lr"], config["net"]["name"], loss, run_id))
    conn.close()
    return runs_dir


def shown_lines(table) -> list[str]:
    """The table's rows as they are drawn (header first), plain text."""
    return ["".join(segment.text for segment in table.render_line(y)) for y in range(table.size.height)]


async def filter_to(pilot, text: str) -> None:
    runs_view(pilot.app).set_filter(text)
    await settle(pilot)


# -- 1. run ids --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_every_run_id_is_shown_whole(trial_store, size):
    app = make_app(trial_store)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        view = runs_view(app)
        ids = table_ids(app)
        assert "lr_sweep-lrfind-1.4" in ids and "lr_sweep-lrfind-2.4" in ids
        assert view.widths["run"] >= max(map(len, ids))
        at = view.keys.index("run")
        assert all(str(view._cells[rid][at]) == rid for rid in ids)
        drawn = "\n".join(shown_lines(view.table))
        for rid in ids[:view.table.size.height - 1]:
            assert f" {rid} " in drawn, rid


def test_an_id_too_long_for_the_terminal_keeps_its_tail():
    from tui.views.runs.columns import fit_columns, shorten_id

    keys, widths = fit_columns(30, run_width=len("lr_sweep-lrfind-2.4"))
    assert keys[:3] == ["sel", "run", "status"] and widths["run"] < len("lr_sweep-lrfind-2.4")
    one, two = (shorten_id(f"lr_sweep-lrfind-{n}.4", widths["run"]) for n in (1, 2))
    assert one != two and one.endswith("-1.4") and two.endswith("-2.4") and "…" in one
    assert len(one) == widths["run"]
    assert shorten_id("playground-3.12", 9).endswith("-3.12")
    assert shorten_id("cnn-1.1", 9) == "cnn-1.1"


# -- 2. varying keys before constant ones -----------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_narrow_table_keeps_the_keys_that_vary_and_says_the_constant_ones_once(trial_store, size):
    app = make_app(trial_store)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await filter_to(pilot, "exp:playground-3")
        view = runs_view(app)
        assert {"cfg:net.activation", "cfg:net.hidden", "run", "status", "loss"} <= set(view.keys), view.keys
        assert not {"opt", "lr", "net"} & set(view.keys), view.keys  # adam, 0.01, mlp for every shown run
        info = str(app.main.query_one("#runs-info").render())
        assert "opt adam · lr 0.01 · net mlp for all" in info
        rows = [tuple(str(c) for c in view._cells[rid][2:]) for rid in table_ids(app)]  # without sel and id
        assert len(set(rows)) == len(rows) == 6, rows  # every row tells its config apart
        await filter_to(pilot, "")  # all runs: opt and lr vary again
        assert {"opt", "lr"} <= set(view.keys)
        assert "for all" not in str(app.main.query_one("#runs-info").render())


# -- 3. cells and headers --------------------------------------------------------------------------------------
def test_compact_numbers_fit_their_column():
    from tui.views.runs.columns import compact_number

    assert compact_number(HUGE_LOSS, 7, ".4f") == "6.12e9"
    assert compact_number(HUGE_LOSS, 5, ".4f") == "6.1e9"
    assert compact_number(0.1397, 7, ".4f") == "0.1397"
    assert compact_number(1.23e-05, 7) == "1.23e-5"
    assert compact_number(0.00087, 7) == "0.00087"
    assert compact_number(float("nan"), 7, ".4f") == "nan"


def test_a_tiny_loss_keeps_its_digits():
    """A fitted spiral ends at a loss of ~1e-5: `.4f` would print 0.0000, as if it were exactly zero."""
    from tui.views.runs.columns import compact_number

    assert compact_number(1.73e-05, 7, ".4f") == "1.73e-5"
    assert compact_number(0.00042, 7, ".4f") == "0.00042"
    assert compact_number(0.0, 7, ".4f") == "0.0000"
    assert compact_number(0.0123, 7, ".4f") == "0.0123"


@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_cells_fit_and_headers_say_which_key(trial_store, size):
    app = make_app(trial_store)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        view = runs_view(app)
        for text in ("exp:playground-3", ""):
            await filter_to(pilot, text)
            for rid in table_ids(app):
                for key, cell in zip(view.keys, view._cells[rid]):
                    assert len(str(cell)) <= view.widths[key], (rid, key, str(cell))
            drawn = "\n".join(shown_lines(view.table))
            assert "…" not in drawn, drawn
        if "loss" in view.keys:
            assert str(view._cells["playground-3.1"][view.keys.index("loss")]) == "6.12e9"
        labels = {key: str(view.table.columns[key].label) for key in view.keys}
        if "cfg:data.name" in labels:
            assert labels["cfg:data.name"] == "data"
        assert "name" not in labels.values()
        if "cfg:data.as_images" in view.keys:
            at = view.keys.index("cfg:data.as_images")
            cells = {rid: str(view._cells[rid][at]) for rid in table_ids(app)}
            assert {cells[r] for r in cells if r.startswith("playground")} == {""}  # the dataset has no such key
            assert {cells[r] for r in cells if r.startswith("lr_sweep")} == {"false", "true"}
    if size == WIDE:
        assert "cfg:data.name" in labels and "cfg:data.as_images" in labels, list(labels)  # the wide table shows both


# -- 4. scrolling after a filter change ------------------------------------------------------------------------
@run_async
async def test_a_filter_change_never_leaves_the_first_rows_scrolled_away(tmp_path):
    runs_dir = make_store(tmp_path / "runs", experiments=4, runs_per_experiment=20, points_per_run=0, logs=False)
    app = make_app(runs_dir)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        view = runs_view(app)
        table = view.table
        table.focus()
        await pilot.press("ctrl+end")
        await settle(pilot)
        cursor_run = view.cursor_run_id()
        assert table.scroll_y > 0 and cursor_run == table_ids(app)[-1]
        # the cursor's run leaves: the first rows show and the cursor is on the first
        await filter_to(pilot, "exp:cnn")
        assert cursor_run not in table_ids(app)
        assert table.scroll_y == 0 and table.cursor_row == 0
        assert view.cursor_run_id() == table_ids(app)[0]
        # the cursor's run stays: it is in view
        table.move_cursor(row=table.row_count - 1)
        await settle(pilot)
        kept = view.cursor_run_id()
        await filter_to(pilot, "")
        assert kept in table_ids(app)
        row = table_ids(app).index(kept)
        assert table.cursor_row == row
        assert table.scroll_y <= row < table.scroll_y + table.size.height - 1
