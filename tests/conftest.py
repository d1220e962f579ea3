"""Shared fixtures: a runs directory, and helpers that create runs from inline experiment configs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # before any test imports mxnet


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


def write_experiment(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def create_runs(runs_dir: Path, raw: dict, name: str = "t") -> tuple:
    """Validate an inline experiment (same path as `mxdash run`) and create its runs; returns (store, run ids)."""
    from experiments.config import plan_runs, resolve_run
    from experiments.store import Store

    runs = [resolve_run(run, None, name) for run in plan_runs(raw)]
    store = Store(runs_dir, create=True)
    _, run_ids = store.create_experiment(name, None, raw, raw.get("grid", {}), runs)
    return store, run_ids


def cli(*args, cwd=None, timeout=300, env=None):
    """Run `mxdash ...` in a subprocess (as a user would); returns CompletedProcess with text output."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or PROJECT, timeout=timeout, env=env)
