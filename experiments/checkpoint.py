"""Checkpoint files of a run, without mxnet: the commit record, its checksums, and the checks resume makes.

A checkpoint is three files in the run's folder: `step<N>.params` (net.save_parameters), `step<N>.states`
(trainer.save_states: optimizer, scheduler, update count) and `checkpoint.json`, which names them with their sizes
and SHA-256 and holds the loop position. Replacing checkpoint.json is the atomic commit: a kill at any moment leaves
the previous checkpoint whole. The CLI verifies a checkpoint before it re-queues a run (`mxdash resume`), so a
damaged or missing one is refused at once, naming the file, instead of being found inside the worker.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHECKPOINT = "checkpoint.json"
PARTIAL_SUFFIX = ".partial"  # files being written: renamed into place only when complete


class CheckpointError(Exception):
    """A checkpoint that exists (or must exist) cannot be used. `str(e)` names the file and what to do."""


def sha256(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(run_dir: Path) -> dict | None:
    """The loop state of a run's last committed checkpoint, or None when there is none. Raises CheckpointError when
    checkpoint.json exists but cannot be read."""
    meta = Path(run_dir) / CHECKPOINT
    try:
        text = meta.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(f"cannot read {meta}: {e}") from None
    try:
        state = json.loads(text)
        state["params"], state["states"]  # noqa: B018 - the two names every checkpoint has
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta} is damaged ({type(e).__name__}: {e}); restart the run with "
                              "`mxdash resume RUN --from-scratch`") from None
    return state


def checkpoint_files(run_dir: Path) -> tuple[Path, Path] | None:
    """(parameters, trainer states) of a run's last committed checkpoint, or None."""
    state = read_checkpoint(run_dir)
    return (Path(run_dir) / state["params"], Path(run_dir) / state["states"]) if state else None


def verify_checkpoint(run_dir: Path, expected_step: int | None = None) -> dict | None:
    """The checkpoint a resume would load, checked: every file present with its recorded size and SHA-256.
    `expected_step`: the store recorded a committed checkpoint at that step, so a missing one is an error, not a
    fresh start. Raises CheckpointError naming the file and the way out."""
    run_dir = Path(run_dir)
    state = read_checkpoint(run_dir)
    if state is None:
        if expected_step is not None:
            raise CheckpointError(f"{run_dir / CHECKPOINT} is missing, but the run committed a checkpoint at step "
                                  f"{expected_step}; restore the file, or restart the run with "
                                  "`mxdash resume RUN --from-scratch`")
        return None
    for key in ("params", "states"):
        path = run_dir / state[key]
        recorded = (state.get("sha256") or {}).get(key)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (named by {run_dir / CHECKPOINT}); restart the run with "
                                  "`mxdash resume RUN --from-scratch`")
        if recorded is None:  # written by an mxdash without checksums: nothing to compare with
            continue
        size = (state.get("sizes") or {}).get(key)
        if (size is not None and path.stat().st_size != size) or sha256(path) != recorded:
            raise CheckpointError(f"{path} is damaged (its SHA-256 no longer matches {run_dir / CHECKPOINT}); "
                                  "restart the run with `mxdash resume RUN --from-scratch`")
    return state


def commit_checkpoint(run_dir: Path, state: dict, params_tmp: Path, states_tmp: Path) -> None:
    """Move the complete new files into place, then replace checkpoint.json (the commit), then delete older
    checkpoint files. `state` gets the file names, sizes and checksums."""
    run_dir = Path(run_dir)
    params, states = params_tmp.name[:-len(PARTIAL_SUFFIX)], states_tmp.name[:-len(PARTIAL_SUFFIX)]
    state = dict(state, params=params, states=states,
                 sizes={"params": params_tmp.stat().st_size, "states": states_tmp.stat().st_size},
                 sha256={"params": sha256(params_tmp), "states": sha256(states_tmp)})
    os.replace(params_tmp, run_dir / params)
    os.replace(states_tmp, run_dir / states)
    meta_tmp = run_dir / (CHECKPOINT + PARTIAL_SUFFIX)
    # no fsync: os.replace is atomic against a killed process (what resume is for); against a power cut an fsync
    # per checkpoint would be the price, paid every epoch (a digits epoch takes 30 ms)
    meta_tmp.write_text(json.dumps(state))
    os.replace(meta_tmp, run_dir / CHECKPOINT)
    for old in list(run_dir.glob("step*.params")) + list(run_dir.glob("step*.states")):
        if old.name not in (params, states):
            old.unlink(missing_ok=True)


def remove_partial_files(run_dir: Path) -> None:
    """What an interrupted checkpoint write left behind (a full disk mid-save): never loaded, only in the way."""
    for path in Path(run_dir).glob(f"*{PARTIAL_SUFFIX}"):
        path.unlink(missing_ok=True)
    for legacy in Path(run_dir).glob(CHECKPOINT + ".tmp"):  # mxdash before checksums wrote this name
        legacy.unlink(missing_ok=True)


def discard_checkpoint(run_dir: Path) -> None:
    """For `mxdash resume --from-scratch`: the run starts again at step 0."""
    run_dir = Path(run_dir)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    for path in list(run_dir.glob("step*.params")) + list(run_dir.glob("step*.states")):
        path.unlink(missing_ok=True)
    remove_partial_files(run_dir)
