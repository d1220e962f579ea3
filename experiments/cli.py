"""`mxdash`: run experiments headless, list/show/compare/export runs, stop/resume them, open the dashboard.

Imports no mxnet at module level: `mxdash` (the dashboard), `ls`, `show` & co. start fast; only `run` validates the
experiment with the net and dataset registries (which import mxnet). Bad input: a message on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from experiments import cluster
from experiments.cluster import ClusterError
from experiments.store import ACTIVE, STATUSES, Store, StoreError, default_runs_dir

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    pass


def open_store(args, create: bool = False) -> Store:
    store = Store(args.runs_dir, create=create)
    store.reap_lost()  # any reader marks runs whose worker vanished
    return store


def console():
    from rich.console import Console

    return Console()


# -- run ------------------------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from experiments.config import load_experiment
    from experiments.lifecycle import plan_parallelism, start_scheduler

    if args.address and args.cluster != "ray":
        raise UsageError("--address needs --cluster ray")
    name, raw, runs = load_experiment(args.file, args.set)  # ConfigError -> exit 2, nothing created
    if args.cluster == "ray":  # Ray installed, the cluster reachable and able to hold the runs: else exit 2
        address, resources = cluster.probe(args.address)
        cluster.check_feasible(runs, resources, args.per_gpu)
    if args.dry_run:
        return print_plan(args, name, runs)
    store = Store(args.runs_dir, create=True)
    parallel, _threads = plan_parallelism(len(runs), args.parallel, args.per_gpu)  # the scheduler sets threads
    if args.cluster == "ray":
        parallel = cluster.planned_parallel(len(runs), resources, args.parallel)
    exp_id, run_ids = store.create_experiment(name, str(args.file), raw, raw.get("grid", {}), runs,
                                              parallel=parallel, per_gpu=args.per_gpu)
    if args.cluster == "ray":
        scheduler = cluster.start_cluster_scheduler(store, run_ids, address, args.parallel, args.per_gpu, exp_id)
    else:
        scheduler = start_scheduler(store, run_ids, parallel, args.per_gpu, exp_id)
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


def watch(store: Store, exp_id: str, run_ids: list[str], scheduler=None, quiet: bool = False) -> int:
    """Follow the runs in the store with one progress bar per run; Ctrl-C stops them cleanly."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from experiments.cluster import request_stop  # local runs: lifecycle's; Ray runs: the store's request only
    from experiments.report import status_style

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TextColumn("{task.fields[loss]}"), TimeElapsedColumn(),
                        console=console(), disable=quiet, transient=False)
    tasks = {}
    stopping = False
    with progress:
        while True:
            try:
                store.reap_lost()
                runs = {r["id"]: r for r in store.list_runs(experiment=exp_id)}
                for run_id in run_ids:
                    run = runs[run_id]
                    if run_id not in tasks:
                        label = f"{run_id} {run['optimizer']} lr={run['lr']:g}"
                        tasks[run_id] = progress.add_task(label, total=run["total_steps"] or None, status="",
                                                          loss="")
                    style = status_style(run["status"])
                    loss = f"loss {run['train_loss']:.4f}" if run["train_loss"] is not None else ""
                    progress.update(tasks[run_id], completed=run["step"] or 0, total=run["total_steps"] or None,
                                    status=f"[{style}]{run['status']}[/]", loss=loss)
                if all(runs[r]["status"] not in ACTIVE for r in run_ids):
                    break
                if scheduler is not None and scheduler.poll() is not None:
                    queued = [r for r in run_ids if runs[r]["status"] == "queued"]
                    if queued and not any(runs[r]["status"] == "running" for r in run_ids):
                        raise UsageError(f"the scheduler exited (code {scheduler.returncode}) with runs still "
                                         f"queued: {', '.join(queued)}; see {store.runs_dir / '_scheduler'}")
                time.sleep(0.5)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                progress.console.print("[yellow]stopping the runs (checkpointing); Ctrl-C again to leave them "
                                       "running in the background[/]")
                for run in store.list_runs(experiment=exp_id):
                    if run["id"] in run_ids:
                        request_stop(store, run)
    runs = [r for r in store.list_runs(experiment=exp_id) if r["id"] in run_ids]
    if not quiet:
        console().print(final_table(runs))
    return 1 if any(r["status"] in ("failed", "lost") for r in runs) else 0


def final_table(runs: list[dict]):
    from rich.table import Table

    from experiments.report import differing_config, flat_config, format_duration, run_duration, status_text

    # keys every run has and that differ (an optimizer's own hyperparameters, missing in the others, are noise here)
    other_axes = [k for k, values in differing_config(runs)
                  if k not in ("optimizer.name", "optimizer.lr") and all(k in flat_config(r["config"]) for r in runs)]
    table = Table(title=f"{runs[0]['experiment_id']}" if runs else "runs")

    id_width = max([len(r["id"]) for r in runs] + [3])
    for column in ["run", "optimizer", "lr", *other_axes, "final train loss", "best val acc", "status", "time"]:
        table.add_column(column, justify="right" if column not in ("run", "optimizer", "status") else "left",
                         min_width=id_width if column == "run" else None, no_wrap=column in ("run", "status"))

    for run in runs:
        flat = flat_config(run["config"])
        loss = f"{run['train_loss']:.4f}" if run["train_loss"] is not None else "—"
        acc = f"{run['best_val_acc']:.3f}" if run["best_val_acc"] is not None else "—"
        status = status_text(run["status"])
        if run["status"] == "diverged" and run.get("diverged_step"):
            status.append(f" @{run['diverged_step']}")
        table.add_row(run["id"], run["optimizer"], f"{run['lr']:g}", *[str(flat.get(k, "—")) for k in other_axes],
                      loss, acc, status, format_duration(run_duration(run)))
    return table


# -- reading --------------------------------------------------------------------------------------------------------
LS_FIELDS = ("id", "experiment_id", "net", "dataset", "optimizer", "lr", "seed", "status", "step", "epoch", "epochs",
             "train_loss", "val_loss", "best_val_acc", "best_val_loss", "samples_per_s", "device", "created",
             "started", "ended", "diverged_step", "error")


def cmd_ls(args) -> int:
    if args.status and args.status not in STATUSES:
        raise UsageError(f"unknown status '{args.status}' (expected one of {', '.join(STATUSES)})")
    store = open_store(args)
    if args.experiment and not store.get_experiment(args.experiment):
        raise StoreError(f"unknown experiment id: {args.experiment} (see `mxdash ls`)")
    runs = store.list_runs(status=args.status, experiment=args.experiment)
    if args.json:
        print(json.dumps([{**{k: r[k] for k in LS_FIELDS}, "experiment": r["experiment_id"], "final_loss":
                           r["train_loss"], "config": r["config"]} for r in runs], indent=1))
        return 0
    from rich.table import Table

    from experiments.report import status_text

    table = Table(box=None, pad_edge=False)
    # ids must never be cut (users copy them into `show`/`stop`); the experiment column gives way first
    min_widths = {"id": max([len(r["id"]) for r in runs] + [2]), "status": 9, "optimizer": 8, "epoch": 7}
    for column in ("id", "experiment", "net", "optimizer", "lr", "status", "epoch", "final loss", "best val acc"):
        table.add_column(column, justify="right" if column in ("lr", "epoch", "final loss", "best val acc") else "left",
                         min_width=min_widths.get(column), no_wrap=column in min_widths)
    for r in runs:
        table.add_row(r["id"], r["experiment_id"], r["net"], r["optimizer"], f"{r['lr']:g}", status_text(r["status"]),
                      f"{r['epoch'] or 0:.1f}/{r['epochs']}",
                      f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "—",
                      f"{r['best_val_acc']:.3f}" if r["best_val_acc"] is not None else "—")
    console().print(table if runs else "no runs match")
    return 0


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
    console().print(render_compare(store, runs))
    return 0


def cmd_export(args) -> int:
    from experiments.export import export_runs

    store = open_store(args)
    runs = store.resolve(args.runs)
    out = Path(args.out)
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
    store = open_store(args)
    runs = store.resolve(args.runs)
    resumable = [r for r in runs if r["status"] in ("stopped", "lost", "failed")]
    for r in runs:
        if r not in resumable:
            print(f"{r['id']}: {r['status']}, not resumed (only stopped, lost or failed runs resume)",
                  file=sys.stderr)
    if not resumable:
        return EXIT_BAD_INPUT if len(runs) == 1 else 0
    plan = cluster.plan_resume(resumable, args.cluster, args.address)  # where each run ran, or --cluster; exit 2
    for run in resumable:
        store.requeue(run["id"])
    run_ids = [r["id"] for r in resumable]
    scheduler = cluster.start_resumed(store, plan, args.parallel)
    print(f"resuming {', '.join(run_ids)} from the last checkpoint")
    if args.wait:
        return watch(store, resumable[0]["experiment_id"], run_ids, scheduler)
    return 0


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
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxdash", description="MXNet/Gluon experiments in the terminal")
    sub = parser.add_subparsers(dest="command")

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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. optimizer.lr=0.1")
    p.add_argument("--parallel", type=int, help="runs at a time (default: one per GPU, else one per core)")
    p.add_argument("--per-gpu", type=int, default=1, help="runs sharing one GPU")
    p.add_argument("--detach", action="store_true", help="return at once; the sweep goes on in the background")
    p.add_argument("--dry-run", action="store_true", help="validate and print the runs, create nothing")
    p.add_argument("--cluster", choices=("local", "ray"), default="local",
                   help="where runs train: this machine (default) or a Ray cluster")
    p.add_argument("--address", help="with --cluster ray: auto (the `ray start` cluster, default), HOST:PORT, or "
                                     "local (a private Ray instance on this machine)")

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
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the runs to stop")
    p = command("resume", cmd_resume, "continue stopped, lost or failed runs from their last checkpoint",
                json_flag=False)
    p.add_argument("runs", nargs="+")
    p.add_argument("--parallel", type=int)
    p.add_argument("--wait", action="store_true", help="follow the resumed runs until they end")
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


def main(argv=None) -> int:
    from experiments.config import ConfigError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0].startswith("--runs-dir"):
        argv = ["tui", *argv]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except (ConfigError, StoreError, UsageError, ClusterError) as e:
        print(f"mxdash {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
