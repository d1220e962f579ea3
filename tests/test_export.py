"""export_runs: csv / jsonl / tensorboard files hold exactly the metric rows and run rows in the store."""
import csv
import json
import math

import numpy as np
import pytest

from experiments import export
from experiments.export import export_runs
from experiments.store import Store


def make_config(lr=0.01, hidden=(32,)):
    return {"experiment": {"name": "t"}, "data": {"name": "digits"},
            "net": {"name": "mlp", "hidden": list(hidden)}, "optimizer": {"name": "adam", "lr": lr},
            "train": {"seed": 0, "device": "cpu", "epochs": 2}, "schedule": {"name": "constant"}}


def synthetic_rows(offset: float, steps: int = 60):
    """(step, epoch, wall, key, value) rows following the store's conventions: train metrics every 5 steps,
    dead fractions every 10, validation each 'epoch' of 30 steps."""
    rows = []
    for step in range(5, steps + 1, 5):
        epoch, wall = step / 30, step * 0.25
        rows += [(step, epoch, wall, "train_loss", 2.0 / step + offset), (step, epoch, wall, "lr", 0.01),
                 (step, epoch, wall, "grad_norm", 1.0 + step * 1e-3), (step, epoch, wall, "samples_per_s", 1234.5)]
        if step % 10 == 0:
            rows.append((step, epoch, wall, "dead/dense0", step / 100))
        if step % 30 == 0:
            rows += [(step, epoch, wall, "val_loss", 1.0 / step), (step, epoch, wall, "val_acc", 0.5 + step / 200)]
    return rows


@pytest.fixture
def store_runs(tmp_path):
    store = Store(tmp_path / "runs", create=True)
    _, run_ids = store.create_experiment("t", None, make_config(), {}, [make_config(0.01), make_config(0.1, (64,))])
    written = {}
    for i, run_id in enumerate(run_ids):
        store.claim_run(run_id, pid=1)
        rows = synthetic_rows(offset=i)
        if i == 1:  # a diverged tail: SQLite keeps NaN as NULL, inf as inf
            rows += [(65, 65 / 30, 16.25, "train_loss", float("nan")), (70, 70 / 30, 17.5, "grad_norm", float("inf"))]
        store.append_metrics(run_id, rows, {"step": rows[-1][0], "train_loss": 0.1 + i, "best_val_acc": 0.8})
        store.finish_run(run_id, "completed" if i == 0 else "diverged")
        written[run_id] = [(s, e, w, k, None if isinstance(v, float) and math.isnan(v) else v)
                           for s, e, w, k, v in rows]
    yield store, store.resolve(run_ids), written
    store.close()


def parse_float(text: str):
    return None if text == "" else float(text)


def test_csv_rows_and_runs_table(store_runs, tmp_path):
    store, runs, written = store_runs
    paths = export_runs(store, runs, "csv", tmp_path / "out")
    assert [p.name for p in paths] == [f"{run['id']}.csv" for run in runs] + ["runs.csv"]
    for run in runs:
        with (tmp_path / "out" / f"{run['id']}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == list(export.METRIC_FIELDS)
        got = [(int(r["step"]), float(r["epoch"]), float(r["wall"]), r["key"], parse_float(r["value"])) for r in rows]
        assert got == written[run["id"]]
        assert {r["run_id"] for r in rows} == {run["id"]}
    with (tmp_path / "out" / "runs.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["id"] for r in table] == [run["id"] for run in runs]
    assert [float(r["optimizer.lr"]) for r in table] == [0.01, 0.1]
    assert [json.loads(r["net.hidden"]) for r in table] == [[32], [64]]
    assert [r["status"] for r in table] == ["completed", "diverged"]
    assert [r["experiment"] for r in table] == [runs[0]["experiment_id"]] * 2
    assert [float(r["train_loss"]) for r in table] == [0.1, 1.1]


def test_jsonl_rows_and_runs(store_runs, tmp_path):
    store, runs, written = store_runs
    paths = export_runs(store, runs, "jsonl", tmp_path / "out")
    assert paths[-1].name == "runs.jsonl"
    for run in runs:
        lines = (tmp_path / "out" / f"{run['id']}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        expected = [(s, e, w, k, None if isinstance(v, float) and not math.isfinite(v) else v)
                    for s, e, w, k, v in written[run["id"]]]
        assert [(r["step"], r["epoch"], r["wall"], r["key"], r["value"]) for r in records] == expected
        assert all("Infinity" not in line and "NaN" not in line for line in lines)  # strict JSON
    run_records = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in run_records] == [run["id"] for run in runs]
    assert run_records[1]["config"] == make_config(0.1, (64,))  # nested, not flattened
    assert run_records[0]["status"] == "completed" and run_records[0]["duration"] >= 0


def read_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 = keep every point (the default reservoir-samples scalars down to 10,000)
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def expected_series(rows):
    series = {}
    for step, _epoch, _wall, key, value in rows:
        series.setdefault(key, []).append((step, math.nan if value is None else float(np.float32(value))))
    return series


def assert_same_series(got, expected):
    assert len(got) == len(expected)
    for (step, value), (exp_step, exp_value) in zip(got, expected):
        assert step == exp_step
        assert (math.isnan(value) and math.isnan(exp_value)) or value == exp_value


@pytest.mark.parametrize("chunk_rows", [export.CHUNK_ROWS, 7])  # 7: chunk edges split same-step groups
def test_tensorboard_reads_back(store_runs, tmp_path, monkeypatch, chunk_rows):
    monkeypatch.setattr(export, "CHUNK_ROWS", chunk_rows)
    store, runs, written = store_runs
    paths = export_runs(store, runs, "tensorboard", tmp_path / "tb")
    assert [p.parent.name for p in paths] == [run["id"] for run in runs]
    for run in runs:
        accumulator = read_events(tmp_path / "tb" / run["id"])
        expected = expected_series(written[run["id"]])
        assert set(accumulator.Tags()["scalars"]) == set(expected)
        for tag, series in expected.items():
            events = accumulator.Scalars(tag)
            assert_same_series([(e.step, e.value) for e in events], series)
        first_train = accumulator.Scalars("train_loss")[0]
        assert first_train.wall_time == pytest.approx(run["started"] + 5 * 0.25)
        text = accumulator.Tensors("config")[0].tensor_proto.string_val[0].decode()
        assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == run["config"]


def test_tensorboard_hparams_and_reexport(store_runs, tmp_path):
    from tensorboard.plugins.hparams import api_pb2, metadata

    store, runs, _ = store_runs
    export_runs(store, runs, "tensorboard", tmp_path / "tb")
    export_runs(store, runs, "tensorboard", tmp_path / "tb")  # replaces, never duplicates, the event file
    run_dir = tmp_path / "tb" / runs[1]["id"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    accumulator = read_events(run_dir)
    start_content = accumulator.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    start = metadata.parse_session_start_info_plugin_data(start_content)
    assert start.group_name == runs[1]["id"]
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(0.1)
    assert start.hparams["net.hidden"].string_value == "[64]"
    end_content = accumulator.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content
    assert metadata.parse_session_end_info_plugin_data(end_content).status == api_pb2.STATUS_FAILURE
    assert len(accumulator.Scalars("train_loss")) == 13  # 12 + the NaN, once


def test_iter_metric_chunks_covers_all_rows_in_order(store_runs):
    store, runs, written = store_runs
    run_id = runs[0]["id"]
    chunks = list(store.iter_metric_chunks(run_id, 5))
    assert all(len(chunk) <= 5 for chunk in chunks)
    ids = [row[0] for chunk in chunks for row in chunk]
    assert ids == sorted(ids)
    assert [tuple(row[1:]) for chunk in chunks for row in chunk] == written[run_id]


def test_unknown_format(store_runs, tmp_path):
    store, runs, _ = store_runs
    with pytest.raises(ValueError, match="parquet"):
        export_runs(store, runs, "parquet", tmp_path / "out")
