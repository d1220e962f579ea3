"""The run store under load (benchmarks/store_load.py, shortened): 16 writer processes append metrics while 2 readers
poll; no 'database is locked' or any other error, and every row written is in the database and was seen by both
readers. Nothing here asserts a time."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "store_load.py"


@pytest.fixture(scope="module")
def store_load():
    # benchmarks/ is not a package: load the harness by path (its child processes run it as a script)
    spec = importlib.util.spec_from_file_location("mxdash_store_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["stress", "loop"])
def test_sixteen_writers_two_readers_lose_nothing(store_load, tmp_path, mode):
    # loop: the training loop's ~1 s flushes (shortened to 0.25 s to get several per writer in 4 s);
    # stress: 4-row appends back to back
    result = store_load.run_load(tmp_path / mode, seconds=4.0, writers=16, readers=2, mode=mode, flush_s=0.25,
                                 poll_s=0.05)
    summary = store_load.summarize(result)
    assert store_load.check(result) == []
    assert summary["errors"] == 0 and summary["locked"] == 0
    assert result["db_rows"] == summary["rows_written"] > 0
    readers = [r for r in result["results"] if r["role"] == "reader"]
    assert [r["rows_seen"] for r in readers] == [result["db_rows"]] * 2
    assert [r["last_id"] for r in readers] == [result["db_max_id"]] * 2


def test_check_reports_a_count_mismatch(store_load):
    """The check itself catches lost rows, errors and a reader that fell behind (so a pass means something)."""
    writer = {"role": "writer", "run_id": "x-1.1", "rows": 8, "commits": 2, "last_step": 20, "errors": 0,
              "locked": 0, "error_samples": [], "heartbeat_errors": 0, "heartbeat_error_samples": []}
    reader = {"role": "reader", "rows_seen": 8, "last_id": 8, "polls": 5, "order_errors": 0,
              "per_run": {"x-1.1": 8}, "errors": 0, "locked": 0, "error_samples": []}
    good = {"mode": "loop", "writers": 1, "readers": 1, "results": [writer, reader], "exit_codes": [0, 0], "stderr": {},
            "db_rows": 8, "db_max_id": 8, "db_per_run": {"x-1.1": 8}, "db_steps": {"x-1.1": 20}}
    assert store_load.check(good) == []
    lost = {**good, "db_rows": 7, "db_per_run": {"x-1.1": 7}}
    assert any("rows in the database 7 != rows written 8" in p for p in store_load.check(lost))
    locked = {**good, "results": [{**writer, "errors": 1, "locked": 1,
                                   "error_samples": ["OperationalError: database is locked"]}, reader]}
    assert any("database is locked" in p for p in store_load.check(locked))
    behind = {**good, "results": [writer, {**reader, "rows_seen": 4, "last_id": 4}]}
    assert any("reader 0" in p for p in store_load.check(behind))
