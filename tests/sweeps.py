"""Small real sweeps for the lifecycle, scheduler, cluster and store-fault tests: an experiment file template and the
helpers that start it through the console script and wait on what the store and `mxdash ls` say.

Each test file keeps the defaults it was written with (its poll period, its subprocess timeout, whether its sweep
probes every 50 steps), so it builds its own `SweepHelpers` and takes the helpers it uses from it:

    SWEEPS = SweepHelpers(probe_every=50, poll_period=0.1, cli_timeout=120)
    experiment, wait_for = SWEEPS.experiment, SWEEPS.wait_for
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import cli

SWEEP = """
[experiment]
name = "{name}"
[data]
name = "digits"
[net]
name = "mlp"
hidden = [32]
[optimizer]
name = "momentum"
lr = 0.05
[train]
epochs = {epochs}
batch_size = {batch_size}
log_every = 5
{probe_every}seed = 7
[grid]
{grid}
"""


@dataclass(frozen=True)
class SweepHelpers:
    """The sweep helpers with one test file's defaults."""

    probe_every: int | None = None  # None: no probe_every line, the engine's default
    poll_period: float = 0.2  # seconds between two looks of wait_for
    cli_timeout: float = 300  # seconds `mxdash ls` or `mxdash run --detach` may take

    def experiment(self, tmp_path, name="sweep", epochs=3, batch_size=64, grid='"optimizer.lr" = [0.1]') -> Path:
        probe_every = "" if self.probe_every is None else f"probe_every = {self.probe_every}\n"
        path = tmp_path / f"{name}.toml"
        path.write_text(SWEEP.format(name=name, epochs=epochs, batch_size=batch_size, probe_every=probe_every,
                                     grid=grid))
        return path

    def wait_for(self, predicate, timeout, period=None, what="condition"):
        period = self.poll_period if period is None else period
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(period)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def ls(self, runs_dir, *extra, env=None) -> list[dict]:
        result = cli("ls", "--json", "--runs-dir", runs_dir, *extra, env=env, timeout=self.cli_timeout)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def start_detached(self, path, runs_dir, *extra, env=None) -> dict:
        result = cli("run", path, "--detach", "--json", "--runs-dir", runs_dir, *extra, env=env,
                     timeout=self.cli_timeout)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def all_ended(self, runs_dir):
        runs = self.ls(runs_dir)
        return runs if runs and all(r["status"] not in ("queued", "running") for r in runs) else None

    def detached_run_past(self, tmp_path, name, epochs, step, timeout, what, batch_size=16):
        """One run started detached and trained past `step`: (runs dir, store, run id)."""
        from experiments.store import Store

        runs_dir = tmp_path / "runs"
        (run_id,) = self.start_detached(self.experiment(tmp_path, name, epochs=epochs, batch_size=batch_size),
                                        runs_dir)["runs"]
        store = Store(runs_dir)
        self.wait_for(lambda: (store.get_run(run_id)["step"] or 0) > step, timeout, what=what)
        return runs_dir, store, run_id


def train_loss_steps(store, run_id) -> list[int]:
    return [row[1] for row in store.metrics_since(run_id, keys=["train_loss"])]
