"""The dashboard's artifact reads and the pure parts of the lesson views, without mxnet: the poller reads only new
artifact rows (and bounded first reads), forgets what no view wants, a resumed run's frames replace the old ones;
the sweep around the suggestions as `--set` items; the boundary layout; the events list; `mxdash lrfind`'s output."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest_lessons import make_lesson_store
from experiments.config import apply_overrides, plan_runs, read_experiment_file
from experiments.store import Store
from tui.artifacts import Artifact, ArtifactLog
from tui.cli_runner import lrfind_result
from tui.model import DashboardModel
from tui.poller import Poller
from tui.sweep import find_experiment_file, sweep_lrs, sweep_overrides
from tui.views.boundary import layout
from tui.views.events import Event, events_row
from experiments.annotations import Annotation

PROJECT = Path(__file__).resolve().parent.parent
PLAYGROUND = [f"playground-1.{i}" for i in range(1, 5)]
KEYS = ("boundary", "boundary_points", "confusion")


class CountingStore(Store):
    """The real store, counting the artifact rows it reads (what the poller pays for)."""

    decoded = 0

    def newest_artifacts(self, run_id, key, limit, after_id=0, decode=True):
        rows = super().newest_artifacts(run_id, key, limit, after_id, decode)
        CountingStore.decoded += len(rows)
        return rows


def poll_all(poller: Poller, model: DashboardModel, limit: int = 50) -> int:
    polls = 0
    for polls in range(1, limit + 1):
        result = poller.poll()
        model.apply(result.batch, result.run_rows, result.removed, reset=result.reset, artifacts=result.artifacts,
                    experiments=result.experiments)
        if not result.more and not poller.artifacts_pending:
            break
    return polls


def test_payloads_are_decoded_only_when_a_view_uses_them(tmp_path, monkeypatch):
    """Reading frames costs no JSON decode in the poll worker; the first use of a payload decodes it, once."""
    import tui.artifacts as artifacts

    decoded = []
    real = artifacts.decode_payload
    monkeypatch.setattr(artifacts, "decode_payload", lambda key, payload: decoded.append(key) or real(key, payload))
    runs_dir = make_lesson_store(tmp_path / "runs")
    poller, model = Poller(runs_dir), DashboardModel()
    poll_all(poller, model)
    poller.set_wanted(PLAYGROUND, {key: PLAYGROUND for key in KEYS})
    poll_all(poller, model)
    frames = model.artifacts["playground-1.2"]["boundary"].items
    assert [f.step for f in frames] == [20, 40, 60] and decoded == []
    latest = frames[-1].payload
    assert decoded == ["boundary"] and latest["pred"].dtype == np.uint8
    assert frames[-1].payload is latest and decoded == ["boundary"]  # decoded once
    stored = Store(runs_dir).newest_artifacts("playground-1.2", "boundary", 1)[0]["payload"]
    assert latest["pred"].tolist() == stored["pred"] and latest["classes"] == stored["classes"]


def test_the_poller_reads_only_new_artifact_rows(tmp_path):
    runs_dir = make_lesson_store(tmp_path / "runs")
    poller, model = Poller(runs_dir, store_factory=CountingStore), DashboardModel()
    poll_all(poller, model)
    poller.set_wanted(PLAYGROUND, {key: PLAYGROUND for key in KEYS})
    CountingStore.decoded = 0
    poll_all(poller, model)
    assert CountingStore.decoded == 4 * (3 + 1 + 3)  # every frame, the points, every confusion matrix, once read
    assert [f.step for f in model.artifacts["playground-1.2"]["boundary"].items] == [20, 40, 60]
    assert isinstance(model.artifacts["playground-1.2"]["boundary"].items[0].payload["pred"], np.ndarray)
    assert model.experiments["playground-1"]["file"] == "experiments/playground.toml"

    store = Store(runs_dir)
    frame = store.latest_artifact("playground-1.2", "boundary")
    store.append_artifacts("playground-1.2", [(80, 4.0, 0.8, "boundary", frame["payload"])])
    store.close()
    CountingStore.decoded = 0
    poll_all(poller, model)
    assert CountingStore.decoded == 1  # the new row only
    assert [f.step for f in model.artifacts["playground-1.2"]["boundary"].items] == [20, 40, 60, 80]
    CountingStore.decoded = 0
    poll_all(poller, model)
    assert CountingStore.decoded == 0  # nothing new: nothing read


def test_first_reads_are_bounded_per_poll_and_unwanted_keys_are_forgotten(tmp_path):
    runs_dir = make_lesson_store(tmp_path / "runs")
    poller, model = Poller(runs_dir), DashboardModel()
    poller.artifacts.rows_per_poll = 3
    poll_all(poller, model)
    poller.set_wanted(PLAYGROUND, {"boundary": PLAYGROUND})
    result = poller.poll()  # one pair's three frames, then the budget is spent
    model.apply(result.batch, result.run_rows, result.removed, artifacts=result.artifacts)
    assert result.more and poller.artifacts_pending and len(model.artifacts) == 1
    assert poll_all(poller, model) >= 3 and set(model.artifacts) == set(PLAYGROUND)
    poller.set_wanted(PLAYGROUND, {"boundary": PLAYGROUND[:1]})
    poll_all(poller, model)
    assert set(model.artifacts) == {PLAYGROUND[0]}  # the others' frames are dropped


def test_a_resumed_runs_frames_replace_the_ones_past_its_checkpoint():
    log = ArtifactLog(keep=3)
    log.extend([Artifact(i, step, 0.0, {}) for i, step in enumerate((20, 40, 60), start=1)])
    log.extend([Artifact(9, 40, 0.0, {"again": True})])  # re-recorded from step 40
    assert [(a.step, a.id) for a in log.items] == [(20, 1), (40, 9)]
    log.extend([Artifact(10 + i, 60 + 20 * i, 0.0, {}) for i in range(3)])
    assert [a.step for a in log.items] == [60, 80, 100]  # at most `keep`, the oldest dropped


def test_the_sweep_is_one_section_axis_of_three_lrs_per_optimizer():
    """lr_sweep.toml's optimizer.name x optimizer.lr axes become one `optimizer` axis: s/3, s, 3s per optimizer;
    a setting the range test had (momentum 0.95) stays in its tables; the other axes still multiply."""
    path = PROJECT / "experiments" / "lr_sweep.toml"
    tests = [({"name": "sgd", "lr": 1e-7, "wd": 0.0, "clip_gradient": None}, 0.129),
             ({"name": "momentum", "lr": 1e-7, "wd": 0.0, "clip_gradient": None, "momentum": 0.95}, 0.089)]
    raw = read_experiment_file(path)
    runs = plan_runs(apply_overrides(raw, sweep_overrides(raw["grid"], tests), path), path)
    assert [(r["optimizer"]["name"], r["optimizer"]["lr"]) for r in runs] == [
        ("sgd", 0.043), ("sgd", 0.13), ("sgd", 0.39), ("momentum", 0.03), ("momentum", 0.089), ("momentum", 0.27)]
    assert {r["optimizer"].get("momentum") for r in runs if r["optimizer"]["name"] == "momentum"} == {0.95}
    assert sweep_lrs(0.0167) == [0.0056, 0.017, 0.05]
    raw["grid"]["net.hidden"] = [[32], [64]]
    assert len(plan_runs(apply_overrides(raw, sweep_overrides(raw["grid"], tests), path), path)) == 12
    optimizers = PROJECT / "experiments" / "optimizers.toml"  # a section axis already: replaced
    raw = read_experiment_file(optimizers)
    runs = plan_runs(apply_overrides(raw, sweep_overrides(raw["grid"], tests[:1]), optimizers), optimizers)
    assert [(r["optimizer"]["name"], r["optimizer"]["lr"]) for r in runs] == [("sgd", 0.043), ("sgd", 0.13),
                                                                              ("sgd", 0.39)]


def test_the_experiment_file_is_found_from_what_the_store_recorded(tmp_path):
    shipped = sorted((PROJECT / "experiments").glob("*.toml"))
    assert find_experiment_file("experiments/lr_sweep.toml", "lr_sweep", shipped, roots=(PROJECT,)) == \
        PROJECT / "experiments" / "lr_sweep.toml"
    moved = find_experiment_file("/gone/lr_sweep.toml", "x", shipped)  # the file moved: the shipped one by name
    assert moved == PROJECT / "experiments" / "lr_sweep.toml"
    assert find_experiment_file(None, "nothing-like-it", shipped) is None


def test_boundary_layout_makes_the_maps_as_large_as_fit():
    assert layout(1, 156, 44) == (1, 48, 24)  # one run: the grid's own size
    assert layout(6, 160, 43) == (3, 40, 20)  # playground's six: 3 x 2, square
    per_row, cols, rows = layout(4, 80, 19)
    assert per_row * (cols + 2) - 2 <= 80 and rows * 2 == cols


def test_events_row_lists_what_fits_and_counts_the_rest():
    events = [Event(Annotation("diverged", f"diverged at step {i}", "train_loss", step=i), f"sgd lr={i}", 1, "×")
              for i in range(10)]
    line = events_row(events, 80, 1).plain
    assert line.startswith("× sgd lr=0: diverged at step 0") and line.rstrip().endswith("more")
    shown = line.count("diverged at")
    assert f"+{10 - shown} more" in line and len(line) == 80


def test_lrfind_output_is_read_past_mxnets_log_lines(tmp_path):
    log = tmp_path / "lrfind.log"
    log.write_text("[00:41:21] ../src/storage/storage.cc:202: Using Pooled (Naive) StorageManager for CPU\n"
                   '[\n {\n  "run": "lr_sweep-lrfind-2.1",\n  "optimizer": "sgd",\n  "status": "completed",\n'
                   '  "suggestion": {"lr": 0.12}\n }\n]\n')
    result = lrfind_result(log)
    assert result.ok and result.payload["tests"][0]["suggestion"]["lr"] == 0.12
    log.write_text("experiments/x.toml: optimizer.name: unknown optimizer 'sdg'\n")
    result = lrfind_result(log)
    assert not result.ok and "unknown optimizer" in result.message
