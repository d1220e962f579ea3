"""Export runs and their metrics for other tools: tidy CSV (pandas, W&B), JSON lines, or TensorBoard event files.

Metrics are streamed from the store in chunks, so exporting a run with millions of rows needs little memory.
Imports no mxnet: the CLI calls this. The TensorBoard writer is imported only for that format (it pulls in numpy and
the tensorboard package, which `csv`/`jsonl` exports do not need).
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
from pathlib import Path

from experiments.report import flat_config, run_duration

FORMATS = ("csv", "jsonl", "tensorboard")
METRIC_FIELDS = ("run_id", "step", "epoch", "wall", "key", "value")
# Columns of runs.csv before the flattened config keys: identity, outcome, then the latest values from the run row.
RUN_FIELDS = ("id", "experiment", "status", "step", "epoch", "epochs", "train_loss", "val_loss", "val_acc",
              "best_val_acc", "best_val_loss", "samples_per_s", "diverged_step", "started", "ended", "duration",
              "host", "device", "git_commit", "error")
CHUNK_ROWS = 50_000
WRITER_QUEUE = 1024  # events buffered for the writer thread; the default (10) makes huge exports thread-bound


class ExportError(Exception):
    """An export target the user must change (a file where a folder should be, a folder that cannot be made or
    written): the CLI prints it on one line, exit code 2."""


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before anything is read or made, an --out that is a file or under a file or an unwritable folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; exports go into a folder: choose another --out")
    existing = next(p for p in [out_dir, *out_dir.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ExportError(f"--out {out_dir}: {existing} is a file, so the folder cannot be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out_dir}: {existing} is not writable")


def export_runs(store, runs: list[dict], fmt: str, out_dir: Path) -> list[Path]:
    """Write `runs` (run rows from the store) to `out_dir` in format `fmt`; return the files written.
    Raises ExportError when the folder cannot be made or a file cannot be written."""
    exporters = {"csv": _export_csv, "jsonl": _export_jsonl, "tensorboard": _export_tensorboard}
    if fmt not in exporters:
        raise ValueError(f"unknown export format {fmt!r} (choose one of {', '.join(FORMATS)})")
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return exporters[fmt](store, runs, out_dir)
    except OSError as e:  # /proc, a read-only or full disk, a folder where a file should go, ...
        raise ExportError(f"--out {out_dir}: cannot write {e.filename or out_dir}: {e.strerror or e}") from None


def _metric_rows(store, run_id: str):
    """All metric rows of a run as (step, epoch, wall, key, value), read from the store a chunk at a time."""
    for chunk in store.iter_metric_chunks(run_id, CHUNK_ROWS):
        for _id, step, epoch, wall, key, value in chunk:
            yield step, epoch, wall, key, value


def run_summary_row(run: dict) -> dict:
    """One flat row per run: RUN_FIELDS, then the config as dotted keys (optimizer.lr, net.hidden, ...)."""
    row = {field: run.get(field) for field in RUN_FIELDS}
    row["experiment"] = run.get("experiment_id")
    row["duration"] = run_duration(run)
    for key, value in flat_config(run.get("config") or {}).items():
        row[key] = value
    return row


# -- csv -------------------------------------------------------------------------------------------------------------
def _export_csv(store, runs: list[dict], out_dir: Path) -> list[Path]:
    written = []
    for run in runs:
        path = out_dir / f"{run['id']}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(METRIC_FIELDS)
            for chunk in store.iter_metric_chunks(run["id"], CHUNK_ROWS):
                writer.writerows((run["id"], *row[1:]) for row in chunk)
        written.append(path)
    written.append(_write_runs_csv(runs, out_dir / "runs.csv"))
    return written


def _write_runs_csv(runs: list[dict], path: Path) -> Path:
    rows = [run_summary_row(run) for run in runs]
    # Union of keys in first-seen order: runs of different experiments may have different config keys.
    columns = list(dict.fromkeys(itertools.chain(RUN_FIELDS, *(row.keys() for row in rows))))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return path


def _csv_cell(value):
    """Lists and dicts (net.hidden = [32, 32]) as JSON, so a cell parses back unambiguously."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


# -- jsonl -----------------------------------------------------------------------------------------------------------
def _export_jsonl(store, runs: list[dict], out_dir: Path) -> list[Path]:
    written = []
    for run in runs:
        path = out_dir / f"{run['id']}.jsonl"
        with path.open("w") as f:
            for step, epoch, wall, key, value in _metric_rows(store, run["id"]):
                record = {"run_id": run["id"], "step": step, "epoch": epoch, "wall": wall, "key": key,
                          "value": _json_number(value)}
                f.write(json.dumps(record) + "\n")
        written.append(path)
    runs_path = out_dir / "runs.jsonl"
    with runs_path.open("w") as f:
        for run in runs:
            record = {**run, "duration": run_duration(run)}
            f.write(json.dumps(_strict_json(record), default=str) + "\n")
    written.append(runs_path)
    return written


def _json_number(value):
    """NaN and infinities become null: Python would write NaN/Infinity, which strict JSON readers reject."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _strict_json(value):
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict_json(item) for item in value]
    return _json_number(value)


# -- tensorboard -----------------------------------------------------------------------------------------------------
def _export_tensorboard(store, runs: list[dict], out_dir: Path) -> list[Path]:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    written = []
    for run in runs:
        run_dir = out_dir / run["id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        # A second export into the same folder would otherwise add a second event file and TensorBoard would show
        # every point twice: the newest export replaces the old one.
        for old in run_dir.glob("events.out.tfevents.*"):
            old.unlink()
        writer = EventFileWriter(str(run_dir), max_queue_size=WRITER_QUEUE)
        try:
            start = run.get("started") or run.get("created") or 0.0
            for event in _run_info_events(run, start):
                writer.add_event(event)
            for event in _scalar_events(_metric_rows(store, run["id"]), start):
                writer.add_event(event)
        finally:
            writer.close()
        written.extend(sorted(run_dir.glob("events.out.tfevents.*")))
    return written


def _scalar_events(rows, start: float):
    """One Event per (step, wall) group of consecutive rows: a flush writes train_loss, lr, grad_norm and
    samples_per_s at the same step and time, so grouping them makes the file several times smaller."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    for (step, wall), group in itertools.groupby(rows, key=lambda row: (row[0], row[2])):
        values = [summary_pb2.Summary.Value(tag=key, simple_value=math.nan if value is None else value)
                  for _step, _epoch, _wall, key, value in group]
        yield event_pb2.Event(wall_time=start + wall, step=step, summary=summary_pb2.Summary(value=values))


def _run_info_events(run: dict, start: float) -> list:
    """The config as a text summary (tag `config`), and the hparams plugin's session start/end records."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.text.summary_v2 import text_pb

    config = run.get("config") or {}
    text = "```json\n" + json.dumps(config, indent=2, default=str) + "\n```"  # markdown: the text plugin renders it
    events = [event_pb2.Event(wall_time=start, step=0, summary=text_pb("config", text))]
    hparams = simple_hparams(config)
    if hparams:
        events.extend(event_pb2.Event(wall_time=start, step=0, summary=summary)
                      for summary in _hparams_summaries(run, hparams, start))
    return events


def simple_hparams(config: dict) -> dict:
    """Flattened config values the hparams plugin accepts (bool, number, string); lists as their JSON text."""
    hparams = {}
    for key, value in flat_config(config).items():
        if isinstance(value, (bool, int, float, str)):
            hparams[key] = value
        elif isinstance(value, list) and all(isinstance(item, (bool, int, float, str)) for item in value):
            hparams[key] = json.dumps(value)
    return hparams


def _hparams_summaries(run: dict, hparams: dict, start: float) -> list:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb

    summaries = [hparams_pb(hparams, trial_id=run["id"], start_time_secs=start)]
    # The hparams API knows only success/failure/unknown: a run the user stopped neither succeeded nor failed.
    status = {"completed": api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_UNKNOWN,
              "failed": api_pb2.STATUS_FAILURE, "diverged": api_pb2.STATUS_FAILURE,
              "lost": api_pb2.STATUS_FAILURE}.get(run.get("status"))
    if status is not None:  # queued/running runs have no end yet
        end_info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=run.get("ended") or start)
        content = plugin_data_pb2.HParamsPluginData(session_end_info=end_info)
        summary = summary_pb2.Summary()
        summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(content),
                          tensor=metadata.NULL_TENSOR)
        summaries.append(summary)
    return summaries
