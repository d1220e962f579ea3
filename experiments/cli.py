"""`mxdash`: run experiments headless, list/show/compare/export runs, stop/resume them, open the dashboard.

Imports no mxnet: `mxdash` (the dashboard), `ls`, `show` & co. start fast, and `run` validates an experiment with the
nets' and datasets' own checks without it. Every user-caused error (bad experiment file or key, bad argument, runs
dir or export target that cannot be used, a store that is not one) is ONE line on stderr and exit code 2, before
anything is created. A traceback means a bug.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments import cluster
from experiments.cluster import ClusterError
from experiments.metrics import ACTIVE, DISPLAY_STATUSES, RESUMABLE, STATUSES, display_status
from experiments.store import Store, StoreError, default_runs_dir

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    pass


def open_store(args, create: bool = False) -> Store:
    check_runs_dir(args.runs_dir, writable=False)  # reading needs no write access (a write it tries says why)
    store = Store(args.runs_dir, create=create)
    store.reap_lost()  # any reader marks runs whose worker vanished
    return store


def check_runs_dir(runs_dir: Path, writable: bool = True) -> None:
    """Refuse a --runs-dir that is a file, or whose nearest existing ancestor is a file or not writable, before
    anything is made (the store would otherwise fail half-way with an OSError)."""
    path = Path(runs_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--runs-dir {path} is a file, not a runs directory; point --runs-dir at a directory")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise UsageError(f"--runs-dir {path}: {existing} is a file, so the directory cannot be made there")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--runs-dir {path}: {existing} is not writable")


def create_store(args) -> Store:
    """The store of `mxdash run`, its directory made here so a directory that cannot be made is one line; if the
    store then cannot be opened, the directories made for it are removed again."""
    check_runs_dir(args.runs_dir)
    path = Path(args.runs_dir)
    made = next((p for p in [*reversed(path.absolute().parents), path.absolute()] if not p.exists()), None)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--runs-dir {path}: cannot create it: {e.strerror or e}") from None
    try:
        return Store(path, create=True)
    except (StoreError, OSError):
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def console():
    from rich.console import Console

    return Console()


# -- run ------------------------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from experiments.config import load_experiment
    from experiments.lifecycle import launch_scheduler, new_scheduler, plan_parallelism

    if args.address and args.cluster != "ray":
        raise UsageError("--address needs --cluster ray")
    if args.cluster == "ray":  # Ray installed and the cluster reachable (else exit 2), before the file is read:
        address, resources = cluster.probe(args.address)  # threads are checked against its largest node
        from experiments.config import set_thread_limit

        set_thread_limit(resources["node_cpus"], "the cores of the Ray cluster's largest node")
    name, raw, runs = load_experiment(args.file, args.set)  # ConfigError -> exit 2, nothing created
    if args.cluster == "ray":  # a node able to hold every run: else exit 2
        cluster.check_feasible(runs, resources, args.per_gpu)
    if args.dry_run:
        check_runs_dir(args.runs_dir)  # what `run` would refuse, without creating it
        return print_plan(args, name, runs)
    store = create_store(args)
    parallel, threads = plan_parallelism(len(runs), args.parallel, args.per_gpu)
    if args.cluster == "ray":  # Ray places the runs: the cluster's cores decide threads and runs at a time
        threads = cluster.plan_threads(len(runs), resources)
        parallel = cluster.planned_parallel(len(runs), resources, args.parallel)
    scheduler_id = new_scheduler(store, threads, parallel)
    exp_id, run_ids = store.create_experiment(name, str(args.file), raw, raw.get("grid", {}), runs,
                                              parallel=parallel, per_gpu=args.per_gpu, threads=threads,
                                              scheduler_id=scheduler_id)
    if args.cluster == "ray":
        scheduler = cluster.start_cluster_scheduler(store, scheduler_id, address, args.parallel, args.per_gpu)
    else:
        scheduler = launch_scheduler(store, scheduler_id, parallel, threads, args.per_gpu, args.nice)
    if args.json:
        print(json.dumps({"experiment": exp_id, "runs": run_ids}))
        if args.detach:
            return 0
    elif args.detach:
        print(f"started {exp_id}: {len(run_ids)} runs, {parallel} at a time, in the background")
        print(f"watch:  mxdash ls --experiment {exp_id}   |   mxdash   (dashboard)   |   mxdash stop {exp_id}")
        return 0
    return watch(store, exp_id, run_ids, scheduler, quiet=args.json)


def print_plan(args, name: str, runs: list[dict]) -> int:
    from experiments.report import differing_config

    axes = differing_config([{"config": r} for r in runs]) if len(runs) > 1 else []
    if args.json:
        print(json.dumps({"experiment": name, "runs": runs}))
        return 0
    print(f"{name}: {len(runs)} runs" + (f" over {', '.join(k for k, _ in axes)}" if axes else ""))
    return 0


def run_labels(runs: list[dict]) -> dict[str, str]:
    """Run id -> what sets it apart from the experiment's other runs: the varying config keys, in config order
    ("activation=leaky_relu lr=0.2", "hidden=[2] activation=tanh"); a lone run: its optimizer and lr."""
    from experiments.report import flat_config, format_value

    axes = varying_keys(runs)
    if not axes:
        return {r["id"]: f"{r['optimizer']} lr={r['lr']:g}" for r in runs}
    names = short_names(axes)
    labels = {}
    for run in runs:
        flat = flat_config(run["config"])
        labels[run["id"]] = " ".join(f"{names[k]}={_compact(flat[k], format_value)}" for k in axes)
    return labels


def varying_keys(runs: list[dict]) -> list[str]:
    """Config keys every run has and that differ (an optimizer's own hyperparameters, missing in the others, are
    noise here), in config order."""
    from experiments.report import differing_config, flat_config

    return [k for k, _ in differing_config(runs) if all(k in flat_config(r["config"]) for r in runs)]


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, unless two keys share it (then the whole key)."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (tail if last.count(tail) == 1 else k) for k, tail in zip(keys, last)}


def _compact(value, format_value) -> str:
    return f"{value:g}" if isinstance(value, float) else format_value(value).replace(", ", ",")


class LineProgress:
    """Progress for a pipe or a log file: plain lines, never cut to a width (Rich's live bars are drawn once, at the
    end, and cut to 80 columns there). A line per run when its status changes and at each tenth of its steps."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last: dict[str, tuple] = {}

    def show(self, run_id: str, label: str, run: dict, shown: str, loss: str) -> None:
        step, total = run["step"] or 0, run["total_steps"]
        tenth = int(10 * step / total) if total else step
        if self.last.get(run_id) == (shown, tenth):
            return
        self.last[run_id] = (shown, tenth)
        steps = f"{step}/{total}" if total else (f"{step}" if step else "")
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.time() - self.started))
        print("  ".join(part for part in (f"{run_id} {label}", shown, steps, loss, elapsed) if part), flush=True)

    def note(self, text: str) -> None:
        print(text, flush=True)


class BarsProgress:
    """Progress on a terminal: a live Rich bar per run."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TextColumn("{task.fields[loss]}"),
                                 TimeElapsedColumn(), console=console(), disable=quiet, transient=False)
        self.tasks: dict[str, int] = {}

    def show(self, run_id: str, label: str, run: dict, shown: str, loss: str) -> None:
        from experiments.report import status_style

        if run_id not in self.tasks:
            self.tasks[run_id] = self.progress.add_task(f"{run_id} {label}", total=run["total_steps"] or None,
                                                        status="", loss="")
        self.progress.update(self.tasks[run_id], completed=run["step"] or 0, total=run["total_steps"] or None,
                             status=f"[{status_style(shown)}]{shown}[/]", loss=loss)

    def note(self, text: str) -> None:
        self.progress.console.print(f"[yellow]{text}[/]")


def watch(store: Store, exp_id: str, run_ids: list[str], scheduler=None, quiet: bool = False) -> int:
    """Follow the runs in the store with one progress bar per run (plain lines when stdout is not a terminal);
    Ctrl-C stops them cleanly. Returns 1 when a run failed or was lost, and says what happened to the scheduler when
    it died with runs still queued."""
    import contextlib

    from experiments.cluster import request_stop  # local runs: lifecycle's; Ray runs: the store's request only
    from experiments.lifecycle import describe_exit

    if quiet or console().is_terminal:
        display = BarsProgress(quiet)
        live = display.progress
    else:
        display, live = LineProgress(time.time()), contextlib.nullcontext()
    labels: dict[str, str] = {}
    stopping = False
    scheduler_exit = None
    with live:
        while True:
            try:
                if scheduler is not None and scheduler_exit is None and scheduler.poll() is not None:
                    scheduler_exit = scheduler.returncode
                store.reap_lost()
                runs = {r["id"]: r for r in store.list_runs(experiment=exp_id)}
                if not labels:
                    labels = run_labels([runs[r] for r in run_ids])
                now = time.time()
                for run_id in run_ids:
                    run = runs[run_id]
                    loss = f"loss {run['train_loss']:.4f}" if run["train_loss"] is not None else ""
                    if not quiet:
                        display.show(run_id, labels[run_id], run, display_status(run, now), loss)
                if all(runs[r]["status"] not in ACTIVE for r in run_ids):
                    break
                if scheduler is not None and scheduler_exit is None:
                    try:  # the scheduler exits right after the last run ends: no half-second wait at the end
                        scheduler.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                display.note("stopping the runs (checkpointing); Ctrl-C again to leave them running in the "
                             "background")
                for run in store.list_runs(experiment=exp_id):
                    if run["id"] in run_ids:
                        request_stop(store, run)
    runs = [r for r in store.list_runs(experiment=exp_id) if r["id"] in run_ids]
    out = console()
    if not quiet:
        table = final_table(runs, out.width)
        if not out.is_terminal:  # a pipe or a file has no width to fit: the whole table, nothing cut
            from rich.console import Console
            from rich.measure import Measurement

            out = Console(width=max(out.width, Measurement.get(out, out.options.update(width=10_000), table).maximum))
        out.print(table)
        for line in problem_lines(runs):
            out.print(line, highlight=False, markup=False)
    orphaned = [r["id"] for r in runs if r["status"] == "lost" and "scheduler" in (r.get("error") or "")]
    if orphaned:
        if scheduler is not None and scheduler_exit is not None and scheduler_exit != 0:
            how = f"the scheduler was {describe_exit(scheduler_exit)}"
        else:
            how = "the scheduler died"
        print(f"mxdash run: {how} before starting {len(orphaned)} run(s) ({', '.join(orphaned[:5])}"
              f"{' …' if len(orphaned) > 5 else ''}): they are marked lost; `mxdash resume {exp_id}` runs them",
              file=sys.stderr)
    return 1 if any(r["status"] in ("failed", "lost") for r in runs) else 0


def problem_lines(runs: list[dict]) -> list[str]:
    """One line per failed or lost run: why (a run that "failed" with no reason leaves the user guessing)."""
    lines = []
    for run in runs:
        if run["status"] in ("failed", "lost") and run.get("error"):
            lines.append(f"{run['id']} {run['status']}: {run['error'].splitlines()[0]}")
    return lines


def format_loss(value) -> str:
    """0.1234, or 6.12e+09 for a diverged run's loss (not 6120195276.8000), or 1.73e-05 for a fitted one (not
    0.0000, which reads as exactly zero)."""
    if value is None:
        return "—"
    from experiments.report import keeps_digits

    fixed = f"{value:.4f}"
    return fixed if abs(value) < 1e4 and keeps_digits(value, fixed) else f"{value:.3g}"


def final_table(runs: list[dict], width: int = 80):
    """The table `mxdash run` ends with: each run, the config keys that vary across the sweep (optimizer and lr
    first), and how it ended. Boxed when that fits `width`; else without a box, then without the time column; a
    value is never cut (they were: "0.91…" at 80 columns)."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=width)
    for boxed, with_time in ((True, True), (False, True), (False, False)):
        table = _final_table(runs, boxed, with_time)
        if Measurement.get(console, console.options.update(width=10_000), table).maximum <= width:
            break
    return table


def _final_table(runs: list[dict], boxed: bool, with_time: bool):
    from rich import box
    from rich.table import Table

    from experiments.report import flat_config, format_duration, run_duration, status_text

    axes = sorted(varying_keys(runs), key=lambda k: (k != "optimizer.name", k != "optimizer.lr"))
    headers = {"optimizer.name": "optimizer", "optimizer.lr": "lr"}
    table = Table(title=f"{runs[0]['experiment_id']}" if runs else "runs", box=box.HEAVY_HEAD if boxed else None,
                  pad_edge=boxed, header_style="bold")
    cells = []
    for run in runs:
        flat = flat_config(run["config"])
        status = status_text(run["status"])
        if run["status"] == "diverged" and run.get("diverged_step"):
            status.append(f" @{run['diverged_step']}")
        cells.append([run["id"], *[f"{flat[k]:g}" if isinstance(flat[k], float) else str(flat[k]) for k in axes],
                      format_loss(run["train_loss"]),
                      f"{run['best_val_acc']:.3f}" if run["best_val_acc"] is not None else "—", status,
                      *([format_duration(run_duration(run))] if with_time else [])])
    columns = ["run", *[headers.get(k, k.split(".")[-1]) for k in axes], "loss", "best acc", "status"]
    columns += ["time"] if with_time else []
    for i, column in enumerate(columns):
        width = max([len(column)] + [len(row[i].plain if hasattr(row[i], "plain") else row[i]) for row in cells])
        table.add_column(column, justify="left" if column in ("run", "optimizer", "status") else "right",
                         no_wrap=True, min_width=width)
    for row in cells:
        table.add_row(*row)
    return table


# -- lrfind ---------------------------------------------------------------------------------------------------------
def cmd_lrfind(args) -> int:
    """An LR range test per optimizer of FILE's grid, trained in this process (seconds on small nets; a worker
    process per test would cost more in imports than the tests take) and stored as runs of kind `lrfind`."""
    import contextlib
    import os
    import signal

    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # before mxnet is imported (FACTS.md)
    from experiments.config import load_experiment
    from experiments.lesson_views import render_lrfind
    from experiments.lrfind import LRFindError, plan_range_tests
    from experiments.metrics import ARTIFACT_LR_SUGGESTION, LRFIND_KIND, STOPPED
    from experiments.stop import StopSignal
    from experiments.train import execute

    name, raw, runs = load_experiment(args.file, args.set)  # ConfigError -> exit 2, nothing created
    try:
        plans = plan_range_tests(runs, {"low": args.low, "high": args.high, "steps": args.steps, "rule": args.rule})
    except LRFindError as e:
        raise UsageError(str(e)) from None
    store = Store(args.runs_dir, create=True)
    exp_id, run_ids = store.create_experiment(f"{name}-lrfind", str(args.file), raw, raw.get("grid", {}), plans)
    for run_id in run_ids:
        store.update_run(run_id, kind=LRFIND_KIND)
    out = console()
    settings = plans[0][LRFIND_KIND]
    if not args.json:
        tests = f"{len(run_ids)} LR range test{'s' if len(run_ids) > 1 else ''}"
        out.print(f"{exp_id}: {tests}, lr {settings['low']:g} to {settings['high']:g} in {settings['steps']} steps")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupted = False
    try:
        with contextlib.nullcontext() if args.json else out.status("") as spinner:
            for number, run_id in enumerate(run_ids, start=1):
                if interrupted:
                    store.request_stop(run_id)  # still queued: stopped at once
                    continue
                if spinner is not None:
                    spinner.update(f"{run_id} ({plans[number - 1]['optimizer']['name']}), {number} of {len(run_ids)}")
                with open(store.log_path(run_id), "a") as log_file:
                    status = execute(store, run_id, log=lambda line: print(line, file=log_file, flush=True),
                                     stop=StopSignal().install())  # Ctrl-C: this test stops, the rest don't run
                interrupted = status == STOPPED
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    runs = store.list_runs(experiment=exp_id)
    if args.json:
        print(json.dumps([{"run": r["id"], "optimizer": r["optimizer"], "status": r["status"],
                           "suggestion": (store.latest_artifact(r["id"], ARTIFACT_LR_SUGGESTION) or {}).get("payload")}
                          for r in runs], indent=1))
    else:
        done = [r for r in runs if r["status"] != STOPPED]
        if done:
            out.print(render_lrfind(store, done, out.width))
            _print_sweep_hint(out, args, raw, store, done)
        if interrupted:
            out.print(f"interrupted: {len(runs) - len(done)} of {len(runs)} range tests stopped")
    if interrupted:
        return 130
    return 1 if any(r["status"] == "failed" for r in runs) else 0


def _print_sweep_hint(out, args, raw: dict, store: Store, runs: list[dict]) -> None:
    """The next step: a sweep around the suggestion (when the file's grid takes it as plain --set overrides)."""
    from rich.text import Text

    from experiments.metrics import ARTIFACT_LR_SUGGESTION

    if "optimizer" in raw.get("grid", {}):  # a section axis would override --set optimizer.name
        return
    for run in runs:
        found = store.latest_artifact(run["id"], ARTIFACT_LR_SUGGESTION)
        if found and found["payload"]["lr"] is not None:
            lrs = ",".join(f"{found['payload']['lr'] * f:.2g}" for f in (1 / 3, 1, 3))
            out.print(Text(f"sweep around {run['optimizer']}'s suggestion:", style="dim"))
            # soft wrap: a narrow terminal wraps the command itself, so it still copies as one line
            out.print(Text(f"  mxdash run {args.file} --set optimizer.name={run['optimizer']} "
                           f"--set 'grid.optimizer.lr=[{lrs}]'"), soft_wrap=True)
            return


# -- reading --------------------------------------------------------------------------------------------------------
LS_FIELDS = ("id", "experiment_id", "net", "dataset", "optimizer", "lr", "seed", "status", "step", "epoch", "epochs",
             "train_loss", "val_loss", "best_val_acc", "best_val_loss", "samples_per_s", "device", "created",
             "started", "ended", "diverged_step", "error", "heartbeat", "progress_at", "threads", "scheduler_id",
             "checkpoint_step")


LS_COLUMNS = ("id", "net", "params", "optimizer", "lr", "status", "epoch", "loss", "best acc")  # loss: latest train loss
LS_RIGHT = ("params", "lr", "epoch", "loss", "best acc")
STATUS_COLUMN = LS_COLUMNS.index("status")
LS_SHORT_HEADERS = {"optimizer": "opt", "best acc": "acc"}  # when the line is too long
LS_DROPPED_FIRST = ("params", "net")  # then these leave; a value is cut only when even that is not enough


def cmd_ls(args) -> int:
    if args.status and args.status not in DISPLAY_STATUSES:
        raise UsageError(f"unknown status '{args.status}' (expected one of {', '.join(DISPLAY_STATUSES)})")
    store = open_store(args)
    if args.experiment and not store.get_experiment(args.experiment):
        raise StoreError(f"unknown experiment id: {args.experiment} (see `mxdash ls`)")
    stored_status = "running" if args.status == "stale" else args.status
    now = time.time()
    # never decode summaries nobody prints (10,000 runs: 0.3 s): the weights count comes out of the JSON in SQL
    fields = LS_FIELDS + ("kind", "json_extract(summary, '$.total_params') AS params")
    columns = ", ".join(dict.fromkeys(fields + (("config",) if args.json else ())))
    runs = store.list_runs(status=stored_status, experiment=args.experiment, columns=columns)
    for run in runs:
        run["shown_status"] = display_status(run, now)
    if args.status == "stale":
        runs = [r for r in runs if r["shown_status"] == "stale"]
    if args.json:
        # one run per line through the C encoder (`indent` falls back to the pure-Python one: 2.2 s for 10,000)
        items = (json.dumps({**{k: r.get(k) for k in LS_FIELDS}, "experiment": r["experiment_id"],
                             "final_loss": r["train_loss"], "kind": r.get("kind"), "params": r.get("params"),
                             "stale": r["shown_status"] == "stale",
                             "last_progress_s": None if r.get("progress_at") is None or r["status"] != "running"
                             else round(now - r["progress_at"], 1), "config": r["config"]}) for r in runs)
        sys.stdout.write("[\n" + ",\n".join(items) + "\n]\n")
        return 0
    out = console()
    out.print(ls_text(runs, out.width) if runs else "no runs match", soft_wrap=True)
    return 0


def format_epoch(epoch) -> str:
    """600 for a whole epoch, 212.5 inside one (never 600.0: a tenth of an epoch that is not there)."""
    return f"{epoch or 0:.1f}".removesuffix(".0")


def ls_cells(run: dict) -> tuple[str, ...]:
    from experiments.metrics import LRFIND_KIND

    lrfind = run.get("kind") == LRFIND_KIND  # an LR range test: lr is its suggestion, and it counts steps
    return (run["id"], run["net"] or "—", f"{run['params']:,}" if isinstance(run.get("params"), int) else "—",
            run["optimizer"] or "—", f"{run['lr']:.3g}" if run["lr"] is not None else "—", run["shown_status"],
            f"{run['step'] or 0} st" if lrfind else f"{format_epoch(run['epoch'])}/{run['epochs']}",
            format_loss(run["train_loss"]) if not lrfind else "—",
            f"{run['best_val_acc']:.3f}" if run["best_val_acc"] is not None else "—")


def ls_text(runs: list[dict], width: int):
    """The run list as one Rich Text: columns padded here, statuses coloured. (A rich Table took 9 s for 10,000
    runs; this takes 0.2 s.) Ids are never cut (users copy them into `show` and `stop`). When the line is too long
    the headers get shorter, then the weights count and the net leave; only then does the widest other column give
    way with an ellipsis."""
    from rich.text import Text

    from experiments.report import status_style

    rows = [ls_cells(r) for r in runs]
    keep = list(range(len(LS_COLUMNS)))
    headers = list(LS_COLUMNS)
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in keep]
    widths[STATUS_COLUMN] = max(widths[STATUS_COLUMN], 9)

    def total() -> int:
        return sum(widths[i] for i in keep) + 2 * (len(keep) - 1)

    for name, short in LS_SHORT_HEADERS.items():  # shorter headers, then fewer columns, before any cut value
        i = LS_COLUMNS.index(name)
        if total() > width:
            headers[i] = short
            widths[i] = max(len(short), *(len(row[i]) for row in rows))
    for name in LS_DROPPED_FIRST:
        if total() > width:
            keep.remove(LS_COLUMNS.index(name))
    while total() > width:
        widest = max((i for i in keep if i not in (0, STATUS_COLUMN)), key=lambda i: widths[i])
        if widths[widest] <= 6:
            break
        widths[widest] -= 1

    def cell(value: str, i: int) -> str:
        if len(value) > widths[i] and i:
            value = value[:widths[i] - 1] + "…"
        return value.rjust(widths[i]) if LS_COLUMNS[i] in LS_RIGHT else value.ljust(widths[i])

    before, after = [i for i in keep if i < STATUS_COLUMN], [i for i in keep if i > STATUS_COLUMN]
    text = Text()
    text.append("  ".join(cell(headers[i], i) for i in keep).rstrip() + "\n", style="bold")
    for row in rows:
        text.append("  ".join(cell(row[i], i) for i in before) + "  ")
        text.append(cell(row[STATUS_COLUMN], STATUS_COLUMN), style=status_style(row[STATUS_COLUMN]))
        text.append("  " + "  ".join(cell(row[i], i) for i in after) + "\n")
    text.rstrip()
    return text


def cmd_show(args) -> int:
    from experiments.report import render_show

    store = open_store(args)
    runs = store.resolve([args.run])
    if args.json:
        print(json.dumps(runs[0] if len(runs) == 1 else runs, default=str, indent=1))
        return 0
    out = console()
    for run in runs:
        out.print(render_show(store, run, out.width))
    return 0


def cmd_compare(args) -> int:
    from experiments.report import differing_config, render_compare

    store = open_store(args)
    runs = store.resolve(args.runs)
    if args.json:
        print(json.dumps({"differing": dict(differing_config(runs)),
                          "runs": [{k: r[k] for k in LS_FIELDS} for r in runs]}, default=str, indent=1))
        return 0
    out = console()
    out.print(render_compare(store, runs, weights=True, console=out))
    return 0


def cmd_export(args) -> int:
    from experiments.export import check_out_dir, export_runs

    out = Path(args.out)
    check_out_dir(out)  # before reading anything: a target that cannot be used is refused at once
    store = open_store(args)
    runs = store.resolve(args.runs)
    paths = export_runs(store, runs, args.format, out)
    print(f"exported {len(runs)} runs as {args.format} to {out} ({len(paths)} files)")
    if args.format == "tensorboard":
        print(f"open with: tensorboard --logdir {out}")
    return 0


# -- lifecycle ------------------------------------------------------------------------------------------------------
def cmd_stop(args) -> int:
    from experiments.cluster import request_stop  # local runs: lifecycle's; Ray runs: the store's request only

    store = open_store(args)
    runs = [r for r in store.resolve(args.runs) if r["status"] in ACTIVE]
    if not runs:
        print("nothing to stop: no queued or running run among those")
        return 0
    for run in runs:
        request_stop(store, run)
    deadline = time.time() + args.timeout
    while time.time() < deadline and any(store.get_run(r["id"])["status"] in ACTIVE for r in runs):
        time.sleep(0.25)
        store.reap_lost()
    for run in runs:
        print(f"{run['id']}: {store.get_run(run['id'])['status']}")
    return 0


def cmd_resume(args) -> int:
    """Continue stopped, lost or failed runs from their last checkpoint, checked first: a missing or damaged
    checkpoint is refused here, naming the file (`--from-scratch` restarts such a run at step 0). Re-queueing is
    a compare-and-set, so of two resumes of one run exactly one wins; the other is refused with exit 2."""
    from experiments.checkpoint import CheckpointError, discard_checkpoint, verify_checkpoint
    from experiments.lifecycle import launch_scheduler, new_scheduler

    store = open_store(args)
    runs = store.resolve(args.runs)
    named = set(args.runs)  # a run named by its own id must resume or be refused (exit 2); an experiment's
    refused, skipped, resumable = [], [], []  # members that need nothing (completed, running) are only listed
    for run in runs:
        if run["status"] not in RESUMABLE:
            why = {"queued": "already queued (another `mxdash resume` or a sweep will start it)",
                   "running": "running"}.get(run["status"], f"{run['status']}: nothing to resume")
            (refused if run["id"] in named else skipped).append(f"{run['id']}: {why}")
            continue
        if not args.from_scratch:
            try:
                verify_checkpoint(store.run_dir(run["id"]), run.get("checkpoint_step"))
            except CheckpointError as e:
                refused.append(f"{run['id']}: {str(e).replace('RUN', run['id'])}")
                continue
        resumable.append(run)
    # where each run goes back to (where it ran, or --cluster): Ray targets are probed first, exit 2 on failure
    plan = cluster.plan_resume(resumable, args.cluster, args.address) if resumable else {}
    targets = {run_id: address for address, ids in plan.items() for run_id in ids}
    started: list[str] = []
    groups: dict[tuple, list[dict]] = {}
    for run in resumable:  # results depend on the OpenMP thread count: each run resumes with the one it had
        groups.setdefault((targets.get(run["id"]), run.get("threads") or (os.cpu_count() or 1)), []).append(run)
    for (address, threads), group in groups.items():
        parallel = max(1, min(args.parallel or (os.cpu_count() or 1) // threads or 1, len(group)))
        scheduler_id = new_scheduler(store, threads, parallel)
        won = []
        for run in group:
            if store.requeue(run["id"], scheduler_id):
                won.append(run["id"])
            else:
                now = store.get_run(run["id"])
                refused.append(f"{run['id']}: another command resumed it first (now {now['status'] if now else '?'})")
        if not won:
            store.scheduler_ended(scheduler_id, "ended", "nothing to run")
            continue
        if args.from_scratch:
            for run_id in won:
                discard_checkpoint(store.run_dir(run_id))
                store.update_run(run_id, checkpoint_step=None)
        if address is None:
            for run_id in won:  # home again (or never away): stop, resume and the reaper treat it as local
                store.update_run(run_id, cluster=None, cluster_task=None, node=None)
            launch_scheduler(store, scheduler_id, parallel, threads, niceness=args.nice)
        else:
            cluster.start_cluster_scheduler(store, scheduler_id, address, args.parallel, 1)
        started.extend(won)
    for line in skipped:
        print(f"not resumed: {line}")
    for line in refused:
        print(f"mxdash resume: {line}", file=sys.stderr)
    if not started:
        return EXIT_BAD_INPUT if refused or not skipped else 0
    how = "from step 0" if args.from_scratch else "from the last checkpoint"
    print(f"resuming {', '.join(started)} {how}")
    if args.wait:
        status = watch(store, store.get_run(started[0])["experiment_id"], started)
        return status or (EXIT_BAD_INPUT if refused else 0)
    return EXIT_BAD_INPUT if refused else 0


def cmd_gc(args) -> int:
    store = open_store(args)
    if args.runs:
        runs = store.resolve(args.runs)
    else:
        statuses = args.status or ["failed", "lost", "stopped", "diverged"]
        runs = [r for s in statuses for r in store.list_runs(status=s)]
    active = [r["id"] for r in runs if r["status"] in ACTIVE]
    if active:
        raise UsageError(f"refusing to delete active runs: {', '.join(active)} (stop them first)")
    if not runs:
        print("nothing to delete")
        return 0
    if not args.yes:
        print(f"would delete {len(runs)} runs: {', '.join(r['id'] for r in runs)}\nrerun with --yes to delete them")
        return 0
    store.delete_runs([r["id"] for r in runs])
    print(f"deleted {len(runs)} runs and their files")
    return 0


def cmd_doctor(args) -> int:
    from experiments.doctor import main as doctor_main

    return doctor_main(json_output=args.json)


def cmd_tui(args) -> int:
    from tui.app import main as tui_main

    return tui_main(args.runs_dir) or 0


# -- parser ---------------------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (it prints the usage first otherwise), exit code 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def niceness(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a niceness 0..19, got {text!r}") from None
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"expected a niceness 0..19, got {text!r}")
    return value


def nice_option(parser: argparse.ArgumentParser) -> None:
    from experiments.lifecycle import WORKER_NICENESS

    parser.add_argument("--nice", type=niceness, default=WORKER_NICENESS, metavar="N",
                        help=f"local workers run at niceness N (default {WORKER_NICENESS}: the dashboard and your "
                             "shell stay responsive while training takes the cores; 0 for the same priority)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mxdash", description="MXNet/Gluon experiments in the terminal")
    sub = parser.add_subparsers(dest="command")
    parser.commands = sub.choices  # name -> subparser, filled as commands are added below

    def command(name, func, help_text, json_flag=True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--runs-dir", type=Path, default=default_runs_dir(),
                       help="run store directory (default ./runs, or $MXDASH_RUNS)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.set_defaults(func=func)
        return p

    p = command("run", cmd_run, "run an experiment file (its grid), with progress")
    p.add_argument("file", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. optimizer.lr=0.1 (a key of a section axis is set in each of its tables)")
    p.add_argument("--parallel", type=positive_int, help="runs at a time (default: one per GPU, else one per core)")
    p.add_argument("--per-gpu", type=positive_int, default=1, help="runs sharing one GPU")
    p.add_argument("--detach", action="store_true", help="return at once; the sweep goes on in the background")
    nice_option(p)
    p.add_argument("--dry-run", action="store_true", help="validate and print the runs, create nothing")
    p.add_argument("--cluster", choices=("local", "ray"), default="local",
                   help="where runs train: this machine (default) or a Ray cluster")
    p.add_argument("--address", help="with --cluster ray: auto (the `ray start` cluster, default), HOST:PORT, or "
                                     "local (a private Ray instance on this machine)")

    p = command("lrfind", cmd_lrfind, "LR range test per optimizer of FILE's grid: suggests a learning rate")
    p.add_argument("file", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. net.hidden=[32]")
    p.add_argument("--low", type=float, help="first learning rate (default 1e-7)")
    p.add_argument("--high", type=float, help="last learning rate (default 10)")
    p.add_argument("--steps", type=int, help="updates from low to high (default 100)")
    p.add_argument("--rule", choices=("minimum", "steep"),
                   help="minimum: lowest smoothed loss / 10 (default); steep: steepest descent against log LR")

    p = command("ls", cmd_ls, "list runs with live statuses")
    p.add_argument("--status")
    p.add_argument("--experiment")
    p = command("show", cmd_show, "one run: config, metrics, curves, log tail")
    p.add_argument("run")
    p = command("compare", cmd_compare, "runs side by side: differing config and metrics")
    p.add_argument("runs", nargs="+")
    p = command("export", cmd_export, "export metrics (csv, jsonl, tensorboard)", json_flag=False)
    p.add_argument("runs", nargs="+")
    p.add_argument("--format", choices=("csv", "jsonl", "tensorboard"), default="csv")
    p.add_argument("--out", default="export")
    p = command("stop", cmd_stop, "stop runs cleanly (checkpoint, status stopped)", json_flag=False)
    p.add_argument("runs", nargs="+")
    p.add_argument("--timeout", type=non_negative_float, default=60.0, help="seconds to wait for the runs to stop")
    p = command("resume", cmd_resume, "continue stopped, lost or failed runs from their last checkpoint",
                json_flag=False)
    p.add_argument("runs", nargs="+")
    p.add_argument("--parallel", type=positive_int)
    p.add_argument("--from-scratch", action="store_true",
                   help="restart from step 0, discarding the checkpoint (for a missing or damaged one)")
    p.add_argument("--wait", action="store_true", help="follow the resumed runs until they end")
    nice_option(p)
    p.add_argument("--cluster", choices=("local", "ray"), help="where to resume (default: where each run ran)")
    p.add_argument("--address", help="with --cluster ray: auto, HOST:PORT or local")
    p = command("gc", cmd_gc, "delete runs and their files (default: failed, lost, stopped, diverged)",
                json_flag=False)
    p.add_argument("runs", nargs="*")
    p.add_argument("--status", action="append", choices=STATUSES)
    p.add_argument("--yes", action="store_true", help="really delete")
    command("tui", cmd_tui, "open the dashboard (also: plain `mxdash`)", json_flag=False)
    p = command("doctor", cmd_doctor, "what this machine can run: Python, MXNet build, GPUs, Ray")
    return parser


def _command_first(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`mxdash` and `mxdash --runs-dir X` open the dashboard; `mxdash --runs-dir X ls` is `mxdash ls --runs-dir X`
    (each command owns its --runs-dir, so a leading one moves behind the command it precedes)."""
    if not argv:
        return ["tui"]
    if not argv[0].startswith("--runs-dir"):
        return list(argv)
    option = argv[:1] if "=" in argv[0] else argv[:2]
    rest = argv[len(option):]
    if rest and rest[0] in parser.commands:
        return [rest[0], *option, *rest[1:]]
    return ["tui", *argv]


def main(argv=None) -> int:
    from experiments.config import ConfigError
    from experiments.export import ExportError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(_command_first(argv, parser))
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that went away surfaces here, not at exit
        return code
    except (ConfigError, StoreError, UsageError, ExportError, ClusterError) as e:
        print(f"mxdash {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # `mxdash ... --json | head`: the reader stopped reading, which is not an error; stop writing, quietly
        # (stdout is pointed at /dev/null so the interpreter's final flush does not raise again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
