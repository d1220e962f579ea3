"""Dashboard benchmarks: first paint with 1,000 runs, key-press latency while 4 runs train, catching up with
20 runs x 100k points. Prints a table with targets and ratios (numbers for the README).

    /work/venv/bin/python benchmarks/tui_bench.py [--quick] [--json]

- first paint (in-process): from `App.run_test()` entry to the runs table holding all 1,000 rows, repeated.
- first paint (tmux, when tmux is installed): from spawning `python -m tui.app` in a 120x36 tmux pane to a run
  id being on the screen (Python start-up and imports included), read with `capture-pane`.
- key latency: 4 writer processes append metrics like training workers (4 train metrics every 100 ms, validation
  every 1 s, dead-ReLU probes every 500 ms, each flush updating the run row) while the benchmark presses keys in
  the app (cursor moves, selection, sort, tab switches to the plots and back). Latency is from sending a key to
  the app being idle again. The event-loop lag (how late a 10 ms timer fires) shows any stall on the UI thread.
- catch-up: 20 runs x 100k points (2M metric rows) read in chunks, from start to all points in the model.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest_tui import make_store  # noqa: E402  (synthetic stores, no mxnet)
from experiments.store import Store  # noqa: E402
from tui.app import MxdashApp  # noqa: E402
from tui.widgets.runs_table import RunsView  # noqa: E402

FIRST_PAINT_TARGET_S = 1.0
KEY_TARGET_S = 0.100

WRITER = r"""
import os, sys, time, math, random
sys.path.insert(0, sys.argv[1])
from experiments.store import Store
runs_dir, run_id, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
store = Store(runs_dir)
store.claim_run(run_id, os.getpid())
step, t_end, i = 0, time.time() + seconds, 0
while time.time() < t_end:
    i += 1
    step += 10
    now = time.time()
    loss = 2.0 * math.exp(-step / 3000) + 0.05 * random.random()
    rows = [(step, step / 500, now, "train_loss", loss), (step, step / 500, now, "lr", 0.01),
            (step, step / 500, now, "grad_norm", 1 + loss), (step, step / 500, now, "samples_per_s", 9000.0)]
    latest = {"step": step, "epoch": step / 500, "train_loss": loss, "samples_per_s": 9000.0}
    if i % 10 == 0:
        rows += [(step, step / 500, now, "val_loss", loss * 1.1), (step, step / 500, now, "val_acc", 1 - loss / 3)]
        latest.update(val_loss=loss * 1.1, val_acc=1 - loss / 3, best_val_acc=1 - loss / 3)
    if i % 5 == 0:
        rows += [(step, step / 500, now, f"dead/dense{j}", min(1.0, step / 1e5)) for j in range(3)]
    store.append_metrics(run_id, rows, latest)
    time.sleep(0.1)
store.finish_run(run_id, "completed")
"""


async def first_paint_in_process(runs_dir: Path, size=(120, 36)) -> tuple[float, float]:
    """(seconds from run_test() entry to the frame showing a screenful of rows, seconds until all 1,000 rows are
    in the table). Polls the state with 1 ms sleeps (Pilot.pause waits for the whole process to be idle, which
    background threads delay)."""
    app = MxdashApp(runs_dir, machine_probe=False)
    start = time.perf_counter()
    painted = None
    async with app.run_test(size=size):
        while True:
            await asyncio.sleep(0.001)
            try:
                table = app.main.query_one(RunsView).table
            except Exception:
                continue
            if painted is None and table.row_count >= size[1]:
                refreshed = asyncio.get_running_loop().create_future()
                app.screen.call_after_refresh(lambda: refreshed.done() or refreshed.set_result(None))
                await refreshed
                painted = time.perf_counter() - start
            if table.row_count >= 1000:
                break
            if time.perf_counter() - start > 30:
                raise RuntimeError("no rows after 30 s")
        all_rows = time.perf_counter() - start
        await app.workers.wait_for_complete()
    return painted, all_rows


def first_paint_tmux(runs_dir: Path, run_id: str) -> float | None:
    if not shutil.which("tmux"):
        return None
    session = f"mxdash-bench-{os.getpid()}"
    cmd = f"cd {ROOT} && {sys.executable} -m tui.app --runs-dir {runs_dir}"
    start = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "36", cmd], check=True)
    try:
        while time.perf_counter() - start < 30:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if run_id in screen:
                return time.perf_counter() - start
            time.sleep(0.01)
        return None
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def key_script(app):
    """(key, character, predicate factory) cycle: each factory is called before the press and returns a predicate
    that is true once the app has handled that key (its effect is visible in the widget state)."""
    view = lambda: app.main.query_one(RunsView)  # noqa: E731
    table = lambda: view().table  # noqa: E731
    filt = lambda: app.main.query_one("#runs-filter")  # noqa: E731

    def cursor_moves(delta):
        def factory():
            before = table().cursor_row
            return lambda: table().cursor_row == before + delta
        return factory

    def selection_changes():
        before = set(app.selected)
        return lambda: app.selected != before

    def sort_changes():
        before = (view().sort_key, view().sort_reverse)
        return lambda: (view().sort_key, view().sort_reverse) != before

    def tab_is(tab):
        return lambda: (lambda: app.main.active_tab == tab and app.main.view_ready(tab))

    def filter_focused():
        return lambda: filt().has_focus

    def typed(text):
        return lambda: (lambda: filt().value == text)

    def table_focused():
        return lambda: table().has_focus

    return [
        ("down", None, cursor_moves(1)), ("down", None, cursor_moves(1)), ("up", None, cursor_moves(-1)),
        ("space", " ", selection_changes), ("up", None, cursor_moves(-1)), ("space", " ", selection_changes),
        ("o", "o", sort_changes), ("O", "O", sort_changes),
        ("2", "2", tab_is("curves")), ("1", "1", tab_is("runs")), ("3", "3", tab_is("lr")),
        ("1", "1", tab_is("runs")), ("4", "4", tab_is("dead")), ("1", "1", tab_is("runs")),
        ("5", "5", tab_is("compare")), ("1", "1", tab_is("runs")),
        ("slash", "/", filter_focused), ("a", "a", typed("a")), ("d", "d", typed("ad")),
        ("backspace", None, typed("a")), ("backspace", None, typed("")), ("escape", None, table_focused),
    ]


async def press_measured(app, key: str, char: str | None, predicate, timeout: float = 5.0) -> float:
    """Seconds from a key event entering the app (as the terminal driver sends it) to its effect being in the
    widget state and the next screen refresh done."""
    from textual import events

    start = time.perf_counter()
    app._driver.send_message(events.Key(key, char))
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"key {key!r} had no effect after {timeout} s")
        await asyncio.sleep(0.0005)
    refreshed = asyncio.get_running_loop().create_future()
    app.screen.call_after_refresh(lambda: refreshed.done() or refreshed.set_result(None))
    await refreshed
    return time.perf_counter() - start


async def key_latency(runs_dir: Path, run_ids: list[str], seconds: float) -> dict:
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(runs_dir), rid, str(seconds + 10)])
               for rid in run_ids]
    lags: list[float] = []
    latencies: dict[str, list[float]] = {}
    app = MxdashApp(runs_dir, machine_probe=None, poll_interval=1.0)
    stop = False

    async def lag_probe():
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    try:
        async with app.run_test(size=(120, 36)) as pilot:
            while not app.model.runs or app.catching_up:
                await pilot.pause()
            await pilot.pause(0.5)  # deferred views mounted, writers started
            app.set_selected(set(run_ids))  # the plots show the 4 training runs
            probe = asyncio.create_task(lag_probe())
            script = key_script(app)
            t_end = time.perf_counter() + seconds
            i = 0
            while time.perf_counter() < t_end or i % len(script):
                key, char, factory = script[i % len(script)]
                i += 1
                latencies.setdefault(key, []).append(await press_measured(app, key, char, factory()))
                await asyncio.sleep(0.1)  # a fast user; polls and plot renders run in between
            stop = True
            await probe
            points = app.model.points
            polls = app.polls
    finally:
        for w in writers:
            w.terminate()
        for w in writers:
            w.wait()
    every = sorted(v for vals in latencies.values() for v in vals)
    kinds: dict[str, list[float]] = {}
    for key, vals in latencies.items():
        kinds.setdefault(KEY_KINDS.get(key, key), []).extend(vals)
    return {
        "presses": len(every),
        "p50": statistics.median(every),
        "p95": every[int(0.95 * (len(every) - 1))],
        "max": every[-1],
        "worst_key": max(latencies, key=lambda k: max(latencies[k])),
        "per_key_median_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in latencies.items()},
        "per_kind_ms": {k: {"n": len(v), "p50": round(statistics.median(v) * 1000, 1),
                            "p95": round(_p95(v) * 1000, 1), "max": round(max(v) * 1000, 1)}
                        for k, v in kinds.items()},
        "loop_lag_p95": sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else 0.0,
        "loop_lag_max": max(lags) if lags else 0.0,
        "points": points,
        "polls": polls,
    }


# key -> kind of press, for the per-kind table ("1" goes back to Runs; escape leaves the filter input)
KEY_KINDS = {"down": "cursor", "up": "cursor", "space": "select", "o": "sort", "O": "sort",
             **{k: "view switch" for k in "123456"}, "slash": "filter typing", "a": "filter typing",
             "d": "filter typing", "backspace": "filter typing", "escape": "leave filter"}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def print_key_kinds(k: dict) -> None:
    print(f"{'key kind':<20} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for kind, v in k["per_kind_ms"].items():
        print(f"{kind:<20} {v['n']:>4} {v['p50']:>8} {v['p95']:>8} {v['max']:>8}")


async def catch_up(runs_dir: Path) -> tuple[float, int]:
    app = MxdashApp(runs_dir, machine_probe=False)
    start = time.perf_counter()
    async with app.run_test(size=(120, 36)) as pilot:
        while app.polls == 0 or app.catching_up or app._polling:
            await pilot.pause()
            await asyncio.sleep(0.005)
        return time.perf_counter() - start, app.model.points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter latency run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keys-only", action="store_true",
                        help="only the key-latency part (4 writers), with a per-kind table")
    parser.add_argument("--seconds", type=float, default=None, help="length of the key-latency run")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 20.0)
    if args.keys_only:
        with tempfile.TemporaryDirectory(prefix="mxdash-bench-") as tmp:
            live = make_store(Path(tmp) / "live", experiments=3, runs_per_experiment=8, points_per_run=2000,
                              running=4, logs=False)
            running = [r["id"] for r in Store(live).list_runs(status="running")]
            k = asyncio.run(key_latency(live, running, seconds))
        if args.json:
            print(json.dumps(k, indent=2))
            return 0
        print(f"key presses, 4 runs training: {k['presses']} presses, p50 {k['p50'] * 1000:.1f} ms, "
              f"p95 {k['p95'] * 1000:.1f} ms, max {k['max'] * 1000:.1f} ms (key {k['worst_key']!r}); "
              f"loop lag p95/max {k['loop_lag_p95'] * 1000:.1f}/{k['loop_lag_max'] * 1000:.1f} ms")
        print_key_kinds(k)
        return 0
    repeats = 3 if args.quick else 7
    results: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mxdash-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        big1000 = make_store(tmp / "runs1000", experiments=50, runs_per_experiment=20, points_per_run=200,
                             logs=False)
        results["store_1000_build_s"] = time.perf_counter() - t
        paints = [asyncio.run(first_paint_in_process(big1000)) for _ in range(repeats)]
        results["first_paint_s"] = statistics.median(p[0] for p in paints)
        results["all_rows_s"] = statistics.median(p[1] for p in paints)
        newest = Store(big1000).list_runs()[-1]["id"]
        tmux = [first_paint_tmux(big1000, newest) for _ in range(max(1, repeats // 2))]
        tmux = [v for v in tmux if v is not None]
        results["first_paint_tmux_s"] = statistics.median(tmux) if tmux else None

        live = make_store(tmp / "live", experiments=3, runs_per_experiment=8, points_per_run=2000, running=4,
                          logs=False)
        running = [r["id"] for r in Store(live).list_runs(status="running")]
        results["keys"] = asyncio.run(key_latency(live, running, seconds))

        big = make_store(tmp / "big", experiments=1, runs_per_experiment=20, points_per_run=100_000, logs=False)
        results["catch_up_s"], results["catch_up_points"] = asyncio.run(catch_up(big))

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    k = results["keys"]
    rows = [
        ("first paint, 1,000 runs (in-process)", f"{results['first_paint_s'] * 1000:.0f} ms",
         f"< {FIRST_PAINT_TARGET_S * 1000:.0f} ms", results["first_paint_s"] / FIRST_PAINT_TARGET_S),
        ("  all 1,000 rows in the table", f"{results['all_rows_s'] * 1000:.0f} ms", "", None),
    ]
    if results["first_paint_tmux_s"] is not None:
        rows.append(("first paint, 1,000 runs (tmux, process start)", f"{results['first_paint_tmux_s'] * 1000:.0f} ms",
                     f"< {FIRST_PAINT_TARGET_S * 1000:.0f} ms", results["first_paint_tmux_s"] / FIRST_PAINT_TARGET_S))
    rows += [
        (f"key press p50, 4 runs training ({k['presses']} presses)", f"{k['p50'] * 1000:.1f} ms",
         f"< {KEY_TARGET_S * 1000:.0f} ms", k["p50"] / KEY_TARGET_S),
        ("key press p95", f"{k['p95'] * 1000:.1f} ms", f"< {KEY_TARGET_S * 1000:.0f} ms", k["p95"] / KEY_TARGET_S),
        (f"key press max (key {k['worst_key']!r})", f"{k['max'] * 1000:.1f} ms", "", k["max"] / KEY_TARGET_S),
        ("event-loop lag p95 / max", f"{k['loop_lag_p95'] * 1000:.1f} / {k['loop_lag_max'] * 1000:.1f} ms", "", None),
        (f"catch up 20 runs x 100k pts ({results['catch_up_points']:,} pts)", f"{results['catch_up_s']:.2f} s",
         "", None),
    ]
    print(f"mxdash dashboard benchmark ({results['cpus']} CPUs, Python {sys.version.split()[0]})")
    print(f"{'measure':<52} {'value':>14} {'target':>10} {'ratio':>7}")
    for name, value, target, ratio in rows:
        print(f"{name:<52} {value:>14} {target:>10} {'' if ratio is None else f'{ratio:.2f}':>7}")
    print()
    print_key_kinds(k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
