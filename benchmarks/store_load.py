"""The run store under load: N writer processes append metrics while M readers poll, then every row is accounted for.

Writers are separate processes (this file run with `--role writer`), each with its own `Store(dir)` and its own run,
appending with `store.append_metrics(run_id, rows, latest)`, the call the training loop makes, plus what a worker
does around it: a heartbeat thread with its own connection (`store.heartbeat` every second) and the stop-request
check after every flush. Two modes:
- loop:   one batch of `--loop-rows` rows every `--flush-s` (the training loop's ~1 s flushes);
- stress: batches of `--stress-rows` rows (one log window) back to back, as fast as the store takes them.
Readers (`--role reader`) poll `metrics_since_all(last_id)` and `list_runs()` every `--poll-s` (and `reap_lost()`
every 5 s, as the dashboard does), checking that ids only grow.

Every exception is counted (sqlite3.OperationalError 'database is locked' separately). At the end: rows in the DB ==
rows the writers say they committed (in total and per run), every run row's `step` == its writer's last step, both
readers saw exactly those rows and end on the same last id == MAX(id); zero errors. Exit code 1 otherwise.

    /work/venv/bin/python benchmarks/store_load.py [--seconds 30] [--writers 16] [--readers 2] [--mode both]

tests/test_store_load.py imports `run_load` and `check` from here (this file is loaded by path; the child processes
run it as a script, so nothing depends on how it was imported).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from experiments.store import Store  # noqa: E402  (stdlib only: no mxnet in the children)

LOCKED = "database is locked"
REAP_EVERY_S = 5.0
METRIC_KEYS = ("train_loss", "lr", "grad_norm", "samples_per_s")


def run_config(i: int) -> dict:
    """The fields `create_experiment` needs; the store does not validate configs."""
    return {"net": {"name": "mlp"}, "data": {"name": "digits"}, "optimizer": {"name": "adam", "lr": 0.001},
            "train": {"seed": i, "device": "cpu", "epochs": 1}}


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Errors:
    def __init__(self):
        self.count, self.locked, self.samples = 0, 0, []

    def add(self, exc: BaseException) -> None:
        self.count += 1
        self.locked += LOCKED in str(exc)
        if len(self.samples) < 5:
            self.samples.append(error_text(exc))

    def as_dict(self) -> dict:
        return {"errors": self.count, "locked": self.locked, "error_samples": self.samples}


# -- child processes --------------------------------------------------------------------------------------------------
def wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(3)


def heartbeat_loop(runs_dir: str, run_id: str, stop: threading.Event, errors: Errors, period_s: float = 1.0) -> None:
    """What experiments.worker.heartbeat_forever does, with its failures counted instead of printed."""
    store = Store(runs_dir)
    while not stop.wait(period_s):
        try:
            store.heartbeat(run_id)
        except Exception as exc:
            errors.add(exc)
    store.close()


def writer_main(args) -> dict:
    store = Store(args.runs_dir)
    store.claim_run(args.run_id, os.getpid())
    beat_errors = Errors()
    stop = threading.Event()
    beat = threading.Thread(target=heartbeat_loop, args=(args.runs_dir, args.run_id, stop, beat_errors),
                            daemon=True)
    wait_for_go()
    beat.start()
    errors, latencies = Errors(), []
    rows_written = commits = step = last_step = 0
    batch = args.loop_rows if args.mode == "loop" else args.stress_rows
    start = time.perf_counter()
    deadline = start + args.seconds
    # Workers flush about once a second from whenever they started: spread the writers' phases over the period
    # (a seeded offset per run; all writers flushing in the same instant is the worst case, not the usual one).
    next_flush = start + args.flush_s * (random.Random(args.run_id).random() if args.mode == "loop" else 1.0)
    while True:
        if args.mode == "loop":
            pause = next_flush - time.perf_counter()
            if pause > 0:
                time.sleep(min(pause, max(deadline - time.perf_counter(), 0)))
            next_flush += args.flush_s
        if time.perf_counter() >= deadline:
            break
        rows = []
        wall = time.perf_counter() - start
        while len(rows) < batch:
            step += 10
            rows.extend((step, step / 100.0, wall, key, 1.0 / step) for key in METRIC_KEYS)
        rows = rows[:batch]
        latest = {"step": rows[-1][0], "epoch": rows[-1][1], "train_loss": rows[-1][4], "samples_per_s": 1000.0}
        t0 = time.perf_counter()
        try:
            store.append_metrics(args.run_id, rows, latest)
        except Exception as exc:
            errors.add(exc)
            continue
        latencies.append(round((time.perf_counter() - t0) * 1e6))
        rows_written += len(rows)
        commits += 1
        last_step = rows[-1][0]
        try:
            store.stop_requested(args.run_id)  # the loop reads this after every flush
        except Exception as exc:
            errors.add(exc)
    elapsed = time.perf_counter() - start
    stop.set()
    beat.join()
    store.close()
    return {"role": "writer", "run_id": args.run_id, "rows": rows_written, "commits": commits,
            "last_step": last_step, "elapsed": elapsed, "latencies_us": latencies, **errors.as_dict(),
            "heartbeat_errors": beat_errors.count, "heartbeat_error_samples": beat_errors.samples}


def reader_main(args) -> dict:
    store = Store(args.runs_dir)
    stop = threading.Event()
    wait_for_go()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    errors, poll_ms = Errors(), []
    last_id = seen = polls = run_lists = 0
    order_errors = 0
    per_run = Counter()
    last_reap = time.monotonic()
    start = time.perf_counter()

    def poll() -> int:
        nonlocal last_id, seen, order_errors, run_lists
        rows = store.metrics_since_all(last_id)
        for row in rows:
            if row[0] <= last_id:  # ids must only grow: a reader polling by id would skip or repeat rows
                order_errors += 1
            last_id = row[0]
            per_run[row[1]] += 1
        seen += len(rows)
        store.list_runs()
        run_lists += 1
        return len(rows)

    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            poll()
            if time.monotonic() - last_reap >= REAP_EVERY_S:
                last_reap = time.monotonic()
                store.reap_lost()
        except Exception as exc:
            errors.add(exc)
        poll_ms.append((time.perf_counter() - t0) * 1e3)
        polls += 1
        stop.wait(args.poll_s)
    during_load = seen
    elapsed = time.perf_counter() - start
    while True:  # the writers are done: catch up
        try:
            if not poll():
                break
        except Exception as exc:
            errors.add(exc)
            break
    store.close()
    return {"role": "reader", "rows_seen": seen, "rows_during_load": during_load, "last_id": last_id,
            "polls": polls, "run_lists": run_lists, "order_errors": order_errors, "per_run": dict(per_run),
            "elapsed": elapsed, "poll_ms_p50": statistics.median(poll_ms) if poll_ms else None,
            "poll_ms_max": max(poll_ms) if poll_ms else None, **errors.as_dict()}


# -- the harness ------------------------------------------------------------------------------------------------------
def percentile(sorted_values: list, q: float):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _child(role: str, runs_dir: Path, log_dir: Path, name: str, extra: list[str]) -> tuple[subprocess.Popen, object]:
    err = open(log_dir / f"{name}.stderr", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--role", role,
                             "--runs-dir", str(runs_dir), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(PROJECT))
    return proc, err


def run_load(runs_dir, seconds: float = 30.0, writers: int = 16, readers: int = 2, mode: str = "stress",
             loop_rows: int = 128, flush_s: float = 1.0, stress_rows: int = 4, poll_s: float = 0.1,
             startup_timeout: float = 120.0) -> dict:
    """Run one load phase against a new store in `runs_dir` (created; must not hold a store yet). Returns the raw
    results and the database's view; `check(result)` lists what is wrong."""
    runs_dir = Path(runs_dir)
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(f"load-{mode}", None, {}, {}, [run_config(i) for i in range(writers)])
    log_dir = runs_dir / "load-logs"
    log_dir.mkdir(exist_ok=True)
    common = ["--mode", mode, "--seconds", str(seconds), "--loop-rows", str(loop_rows), "--flush-s", str(flush_s),
              "--stress-rows", str(stress_rows), "--poll-s", str(poll_s)]
    procs = []
    try:
        for i, run_id in enumerate(run_ids):
            procs.append(("writer", *_child("writer", runs_dir, log_dir, f"writer{i}", ["--run-id", run_id, *common])))
        for i in range(readers):
            procs.append(("reader", *_child("reader", runs_dir, log_dir, f"reader{i}", common)))
        ready_by = time.monotonic() + startup_timeout
        for _, proc, _ in procs:  # barrier: every child has opened the store (and claimed its run)
            line = _readline(proc, ready_by - time.monotonic())
            if line.strip() != "ready":
                raise RuntimeError(f"child {proc.args} did not start: {line!r}")
        started = time.perf_counter()
        for _, proc, _ in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        limit = time.monotonic() + seconds + startup_timeout
        results = [json.loads(_readline(proc, limit - time.monotonic()))
                   for role, proc, _ in procs if role == "writer"]
        writers_done = time.perf_counter() - started
        for role, proc, _ in procs:
            if role == "reader":
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        results += [json.loads(_readline(proc, limit - time.monotonic()))
                    for role, proc, _ in procs if role == "reader"]
        codes = [proc.wait(timeout=max(limit - time.monotonic(), 5)) for _, proc, _ in procs]
    finally:
        for _, proc, err in procs:
            if proc.poll() is None:
                proc.kill()  # only our own children, by their Popen handle
                proc.wait()
            err.close()
    stderr_tails = {}
    for path in sorted(log_dir.glob("*.stderr")):
        text = path.read_text().strip()
        if text:
            stderr_tails[path.stem] = text[-500:]
    db_rows = store.conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM metrics").fetchone()
    db_per_run = dict(store.conn.execute("SELECT run_id, COUNT(*) FROM metrics GROUP BY run_id").fetchall())
    db_steps = {r["id"]: r["step"] for r in store.list_runs(columns="id, step")}
    wal = runs_dir / "mxdash.db-wal"
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    store.close()
    return {"mode": mode, "seconds": seconds, "writers": writers, "readers": readers, "writers_done_s": writers_done,
            "results": results, "exit_codes": codes, "stderr": stderr_tails, "db_rows": db_rows[0],
            "db_max_id": db_rows[1], "db_per_run": db_per_run, "db_steps": db_steps, "wal_bytes": wal_bytes,
            "settings": {"loop_rows": loop_rows, "flush_s": flush_s, "stress_rows": stress_rows, "poll_s": poll_s}}


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of a child's stdout, or RuntimeError after `timeout` seconds (the child may hang on a lock)."""
    box = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(timeout, 0.1))
    if not box:
        raise RuntimeError(f"no answer from {proc.args[3:6]} within {timeout:.0f} s")
    if not box[0]:
        raise RuntimeError(f"{proc.args[3:6]} exited (code {proc.wait()}) without answering")
    return box[0]


def summarize(result: dict) -> dict:
    writers = [r for r in result["results"] if r["role"] == "writer"]
    readers = [r for r in result["results"] if r["role"] == "reader"]
    latencies = sorted(v for w in writers for v in w["latencies_us"])
    rows = sum(w["rows"] for w in writers)
    elapsed = statistics.median(w["elapsed"] for w in writers) if writers else result["seconds"]
    return {
        "rows_written": rows, "commits": sum(w["commits"] for w in writers),
        "rows_per_s": rows / elapsed, "commits_per_s": sum(w["commits"] for w in writers) / elapsed,
        "read_rows_per_s": statistics.mean(r["rows_during_load"] / r["elapsed"] for r in readers) if readers else 0,
        "write_p50_ms": (percentile(latencies, 0.50) or 0) / 1e3,
        "write_p99_ms": (percentile(latencies, 0.99) or 0) / 1e3,
        "write_max_ms": (latencies[-1] if latencies else 0) / 1e3,
        "min_writer_rows": min((w["rows"] for w in writers), default=0),
        "max_writer_rows": max((w["rows"] for w in writers), default=0),
        "errors": sum(r["errors"] for r in result["results"]) + sum(w["heartbeat_errors"] for w in writers),
        "locked": sum(r["locked"] for r in result["results"]),
        "polls": sum(r["polls"] for r in readers),
        "poll_ms_p50": statistics.median(r["poll_ms_p50"] for r in readers) if readers else None,
        "poll_ms_max": max(r["poll_ms_max"] for r in readers) if readers else None,
    }


def check(result: dict) -> list[str]:
    """Everything that is wrong with a load phase (empty list = passed)."""
    problems = []
    writers = [r for r in result["results"] if r["role"] == "writer"]
    readers = [r for r in result["results"] if r["role"] == "reader"]
    if len(writers) != result["writers"] or len(readers) != result["readers"]:
        problems.append(f"{len(writers)}/{result['writers']} writers and {len(readers)}/{result['readers']} "
                        "readers reported")
    if any(result["exit_codes"]):
        problems.append(f"child exit codes {result['exit_codes']}")
    for r in result["results"]:
        if r["errors"] or r.get("heartbeat_errors"):
            problems.append(f"{r['role']} {r.get('run_id', '')}: {r['errors']} errors ({r['locked']} locked), "
                            f"{r.get('heartbeat_errors', 0)} heartbeat errors: "
                            f"{r['error_samples'] + r.get('heartbeat_error_samples', [])}")
    written = sum(w["rows"] for w in writers)
    if result["db_rows"] != written:
        problems.append(f"rows in the database {result['db_rows']} != rows written {written}")
    for w in writers:
        if result["db_per_run"].get(w["run_id"], 0) != w["rows"]:
            problems.append(f"run {w['run_id']}: {result['db_per_run'].get(w['run_id'], 0)} rows in the database, "
                            f"{w['rows']} written")
        if result["db_steps"].get(w["run_id"]) != w["last_step"]:
            problems.append(f"run {w['run_id']}: run row step {result['db_steps'].get(w['run_id'])} != last step "
                            f"written {w['last_step']}")
        if w["rows"] == 0 and result["mode"] == "loop":  # in stress mode starvation is reported, not failed
            problems.append(f"run {w['run_id']}: wrote nothing in {result['seconds']:g} s")
    for i, r in enumerate(readers):
        if r["rows_seen"] != result["db_rows"] or r["last_id"] != result["db_max_id"]:
            problems.append(f"reader {i}: saw {r['rows_seen']} rows up to id {r['last_id']}; the database holds "
                            f"{result['db_rows']} up to id {result['db_max_id']}")
        if r["order_errors"]:
            problems.append(f"reader {i}: {r['order_errors']} rows came with ids not above the last one")
        if r["per_run"] != result["db_per_run"]:
            problems.append(f"reader {i}: per-run counts differ from the database")
        if r["polls"] < 2:
            problems.append(f"reader {i}: only {r['polls']} polls")
    if result["stderr"]:
        problems.append(f"child stderr: {result['stderr']}")
    return problems


def report(phases: list[tuple[dict, dict, list]]) -> str:
    lines = ["| mode | writers x s | batch | rows written | rows/s written | commits/s | rows/s read (per reader) "
             "| write p50 ms | write p99 ms | write max ms | rows/writer min..max | errors (locked) "
             "| count check |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for result, s, problems in phases:
        batch = (f"{result['settings']['loop_rows']} / {result['settings']['flush_s']:g} s" if result["mode"] == "loop"
                 else f"{result['settings']['stress_rows']}")
        lines.append(
            f"| {result['mode']} | {result['writers']} x {result['seconds']:g} | {batch} | {s['rows_written']:,} "
            f"| {s['rows_per_s']:,.0f} | {s['commits_per_s']:,.0f} | {s['read_rows_per_s']:,.0f} "
            f"| {s['write_p50_ms']:.1f} | {s['write_p99_ms']:.1f} | {s['write_max_ms']:.0f} "
            f"| {s['min_writer_rows']:,}..{s['max_writer_rows']:,} | {s['errors']} ({s['locked']}) "
            f"| {'ok' if not problems else 'FAILED'} |")
    for result, s, _ in phases:
        lines.append(f"\n{result['mode']}: {result['readers']} readers, {s['polls']} polls every "
                     f"{result['settings']['poll_s']:g} s (metrics_since_all + list_runs), poll p50 "
                     f"{s['poll_ms_p50']:.1f} ms, max {s['poll_ms_max']:.0f} ms; WAL at the end "
                     f"{result['wal_bytes'] / 1e6:.1f} MB; writers took {result['writers_done_s']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load phase")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--mode", choices=("loop", "stress", "both"), default="both")
    parser.add_argument("--loop-rows", type=int, default=128, help="rows per flush in loop mode")
    parser.add_argument("--flush-s", type=float, default=1.0, help="seconds between flushes in loop mode")
    parser.add_argument("--stress-rows", type=int, default=4, help="rows per append in stress mode")
    parser.add_argument("--poll-s", type=float, default=0.1, help="readers' poll period (the dashboard: 1 s)")
    parser.add_argument("--runs-dir", help="where to create the store (default: a temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--role", choices=("writer", "reader"), help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role == "writer":
        print(json.dumps(writer_main(args)), flush=True)
        return 0
    if args.role == "reader":
        print(json.dumps(reader_main(args)), flush=True)
        return 0

    base = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="mxdash-store-load-"))
    modes = ("loop", "stress") if args.mode == "both" else (args.mode,)
    phases = []
    try:
        for mode in modes:
            print(f"# {mode}: {args.writers} writers, {args.readers} readers, {args.seconds:g} s ...",
                  file=sys.stderr, flush=True)
            result = run_load(base / mode, args.seconds, args.writers, args.readers, mode, args.loop_rows,
                              args.flush_s, args.stress_rows, args.poll_s)
            phases.append((result, summarize(result), check(result)))
    finally:
        if not args.runs_dir and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cores; store dir on "
          f"{'a temp dir' if not args.runs_dir else args.runs_dir}\n")
    print(report(phases))
    failed = False
    for result, _, problems in phases:
        for problem in problems:
            print(f"FAIL {result['mode']}: {problem}")
            failed = True
    print("\nFAILED" if failed else "\nall rows accounted for, zero errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
