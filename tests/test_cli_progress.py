"""`mxdash run FILE` piped (stdout not a terminal): every progress line whole, and each run labelled by what differs
between the experiment's runs (dead_relu: activation and lr; not "momentum lr=0.01" for a relu and a leaky run)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MXDASH = Path(sys.executable).parent / "mxdash"  # the real console script of this environment


def test_piped_progress_names_what_differs_and_is_never_cut(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT), COLUMNS="60")  # a narrow width: Rich cut the lines to it
    done = subprocess.run([str(MXDASH), "run", str(PROJECT / "experiments" / "dead_relu.toml"), "--runs-dir",
                           str(tmp_path / "runs"), "--set", "train.epochs=1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.rstrip().endswith("…")], done.stdout
    expected = {"dead_relu-1.1": ("activation=relu", "lr=0.01"), "dead_relu-1.2": ("activation=relu", "lr=0.2"),
                "dead_relu-1.3": ("activation=leaky_relu", "lr=0.01"),
                "dead_relu-1.4": ("activation=leaky_relu", "lr=0.2")}
    for run_id, names in expected.items():
        progress = [line for line in lines if line.startswith(run_id + " ") and "/22" in line]
        assert progress, (run_id, done.stdout)
        for line in progress:
            label = line.split()[1:3]
            assert label == list(names), line
        finished = progress[-1]
        assert re.search(r"\b22/22\b", finished) and "completed" in finished, finished
        assert re.search(r"loss \d+\.\d{4}\b", finished), finished
        table_row = [line for line in lines if run_id in line and line not in progress]
        assert table_row and "completed" in table_row[-1], done.stdout  # the final table's status, not "comple"
