"""Pause points for tests that must act at an exact moment of a run's start (stop during start-up, and so on).

Off unless MXDASH_TEST_PAUSE is set to `POINT:RUN_ID` (inherited by the scheduler and its workers). At that point
the worker creates `<run dir>/paused-POINT` and waits until the test deletes it, so the test orders its action
through the program's own record instead of a sleep.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("before-claim", "after-claim", "before-train")


def pause(point: str, run_dir: Path, run_id: str, timeout_s: float = 300.0) -> None:
    wanted = os.environ.get("MXDASH_TEST_PAUSE")
    if not wanted or wanted != f"{point}:{run_id}":
        return
    marker = Path(run_dir) / f"paused-{point}"
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout_s
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
