"""The CLI in a subprocess, for the dashboard's launch and resume: the dashboard never trains in-process and never
imports mxnet. The runner is injected (`subprocess.run` by default; tests pass a fake that records commands)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CommandResult:
    ok: bool
    message: str  # the error (stderr) or a one-line summary
    payload: dict = field(default_factory=dict)
    returncode: int = 0


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def launch_experiment(file, runs_dir, parallel: int | None = None, overrides: list[str] = (),
                      timeout: float = 120.0, runner=subprocess.run) -> CommandResult:
    """`mxdash run FILE --detach --json`: validates, creates the runs and starts a detached scheduler."""
    cmd = cli_command("run", str(file), "--detach", "--json", "--runs-dir", str(runs_dir))
    if parallel:
        cmd += ["--parallel", str(int(parallel))]
    for item in overrides:
        cmd += ["--set", item]
    return _run(cmd, timeout, runner, "launch")


def resume_run(run_ids, runs_dir, timeout: float = 60.0, runner=subprocess.run) -> CommandResult:
    """`mxdash resume ID... --runs-dir DIR`: returns at once; the runs continue detached."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return _run(cli_command("resume", *ids, "--runs-dir", str(runs_dir)), timeout, runner, "resume")


def _run(cmd: list[str], timeout: float, runner, what: str) -> CommandResult:
    try:
        proc = runner(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                      env=_cli_env(), cwd=str(PROJECT_ROOT))
    except subprocess.TimeoutExpired:
        return CommandResult(False, f"{what} timed out after {timeout:.0f} s", returncode=-1)
    except OSError as e:
        return CommandResult(False, f"{what} failed to start: {e}", returncode=-1)
    stdout, stderr = (proc.stdout or "").strip(), (proc.stderr or "").strip()
    if proc.returncode != 0:
        message = stderr or stdout or f"{what} failed (exit {proc.returncode})"
        return CommandResult(False, _last_lines(message), returncode=proc.returncode)
    payload: dict = {}
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                payload = json.loads(line)
                break
            except ValueError:
                continue
    return CommandResult(True, stdout.splitlines()[-1] if stdout else f"{what} ok", payload, proc.returncode)


def _last_lines(text: str, n: int = 12) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])
