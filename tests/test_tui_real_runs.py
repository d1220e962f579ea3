"""Every dashboard view on a store filled by real (short) training runs, written by the real engine."""
from __future__ import annotations

import pytest

from conftest import PROJECT
from conftest_tui import run_async, settle
from test_tui_app import _rendered, make_app

pytest.importorskip("mxnet")


@pytest.fixture(scope="session")
def real_runs_dir(tmp_path_factory):
    """The shipped dead_relu experiment (ReLU vs leaky ReLU x two learning rates), 2 epochs, trained for real."""
    from experiments.config import load_experiment
    from experiments.store import Store
    from experiments.train import execute

    runs_dir = tmp_path_factory.mktemp("real") / "runs"
    name, raw, runs = load_experiment(PROJECT / "experiments" / "dead_relu.toml", ["train.epochs=2"])
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(name, None, raw, raw["grid"], runs)
    for run_id in run_ids:
        execute(store, run_id, log=lambda line: None)
    return runs_dir


def pane_text(app, tab: str) -> str:
    return _rendered(app.main.query_one(f"#{tab}-pane"), 200)


@run_async
async def test_every_view_on_real_runs(real_runs_dir):
    app = make_app(real_runs_dir)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert set(app.model.runs) == {f"dead_relu-1.{i}" for i in range(1, 5)}
        assert all(row["status"] in ("completed", "diverged") for row in app.model.runs.values())
        series = app.model.series["dead_relu-1.1"]
        assert {"train_loss", "lr", "val_acc", "dead/hidden0", "dead/hidden2"} <= set(series)

        await pilot.press("2")
        await settle(pilot)
        curves = pane_text(app, "curves")
        assert "relu" in curves and "leaky_relu" in curves  # legends name what differs between the runs

        await pilot.press("3")
        await settle(pilot)
        assert "momentum" in pane_text(app, "lr")  # one line per optimizer against lr

        await pilot.press("4")
        await settle(pilot)
        dead = pane_text(app, "dead")
        assert "hidden0" in dead and "hidden2" in dead

        app.set_selected({"dead_relu-1.1", "dead_relu-1.2"})
        await pilot.press("5")
        await settle(pilot)
        compare = _rendered(app.main.query_one("#compare-body"), 200)
        assert "optimizer.lr" in compare and "final dead/hidden0" in compare

        await pilot.press("1")
        app.open_detail("dead_relu-1.2")
        await settle(pilot)
        assert "hidden0" in _rendered(app.screen.query_one("#detail-net-body"), 160)  # the real net summary
        overview = _rendered(app.screen.query_one("#detail-overview-body"), 160)
        assert "dead_relu-1.2" in overview and "mxnet" in overview  # versions recorded by the worker
