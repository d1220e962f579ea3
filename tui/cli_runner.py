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


def lrfind_command(file, runs_dir, overrides: list[str] = ()) -> list[str]:
    """`mxdash lrfind FILE --json --runs-dir DIR [--set ...]`: one LR range test per optimizer of the file's grid."""
    cmd = cli_command("lrfind", str(file), "--json", "--runs-dir", str(runs_dir))
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def start_lrfind(file, runs_dir, overrides: list[str] = (), starter=subprocess.Popen):
    """Start `mxdash lrfind` in its own session with its output in `<runs dir>/launched/lrfind-<file>.log`, and
    return at once: (process, log path). It trains in that process (seconds on small nets) and records the tests as
    runs the dashboard's polls show live; the process goes on if the dashboard closes. `starter` is Popen-like."""
    log_dir = Path(runs_dir) / "launched"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"lrfind-{Path(file).stem}.log"
    with open(log_path, "w") as log:
        process = starter(lrfind_command(file, runs_dir, overrides), stdout=log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=_cli_env(), cwd=str(PROJECT_ROOT), start_new_session=True)
    return process, log_path


def lrfind_result(log_path) -> CommandResult:
    """What a finished `mxdash lrfind --json` wrote: its JSON list of tests (run, optimizer, status, suggestion), or
    the last lines of its error."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError as e:
        return CommandResult(False, f"cannot read {log_path}: {e.strerror or e}", returncode=-1)
    # the JSON list (indent=1: "[" on its own line) comes last; MXNet's log lines before it start with "[" too
    start = text.rfind("\n[\n")
    start = start + 1 if start >= 0 else (0 if text.startswith("[\n") else -1)
    if start >= 0:
        try:
            tests = json.loads(text[start:])
            return CommandResult(True, f"{len(tests)} LR range tests", {"tests": tests})
        except ValueError:
            pass
    return CommandResult(False, _last_lines(text.strip() or "mxdash lrfind wrote nothing"), returncode=1)


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
