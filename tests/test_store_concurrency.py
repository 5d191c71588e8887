"""Runs sharing one store lose nothing: concurrent processes, a run stopped past its heartbeat, a subprocess run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dynconv_bench.execution.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
CELLS = 16

# One run of the suite in its own process, cells measured by `slow_cell` (in process, or each in a subprocess).
DRIVER = """
import json, sys
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from tests.test_store_concurrency import slow_cell, suite_dict
db, isolate = sys.argv[1], sys.argv[2] == "subprocess"
summary = run_suite(parse_suite(suite_dict()), db, executor=LocalExecutor(subprocess=isolate, fn=slow_cell),
                    progress=False)
print(json.dumps({"ran": summary.ran, "discarded": len(summary.discarded), "left": summary.handoff_lines()}))
"""


def suite_dict() -> dict:
    return {"name": "c", "backbones": ["cifar_resnet8"], "variants": ["static"],
            "measure": {"params": [{"num_classes": 8 + i} for i in range(CELLS)]}}


def slow_cell(cell: dict, plugins: tuple = ()) -> dict:
    """A cell that takes a moment and notes, in a shared log, which process measured it."""
    time.sleep(0.3)
    with open(os.environ["CONCURRENCY_LOG"], "a") as log:
        log.write(json.dumps([os.getpid(), cell["options"]["num_classes"]]) + "\n")
    return {"values": {"h": cell["options"]["num_classes"]}, "status": "ok", "error": None, "environment": {},
            "started": None, "finished": None}


def _start(db: Path, mode: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(db), mode], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _ok_rows(db: Path) -> int:
    try:
        with ResultStore(db, readonly=True) as store:
            return len(store.rows(status="ok"))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_three_runs_one_stopped_past_its_heartbeat_lose_nothing(tmp_path) -> None:  # noqa: ANN001
    db, log = tmp_path / "c.sqlite", tmp_path / "measured.log"
    env = {**os.environ, "CONCURRENCY_LOG": str(log), "DYNCONV_BENCH_HEARTBEAT": "0.2",
           "DYNCONV_BENCH_STALE_AFTER": "1.5", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    stopped = _start(db, "local", env)
    deadline = time.time() + 120
    while _ok_rows(db) < 3 and time.time() < deadline and stopped.poll() is None:  # run A is under way, holding a claim
        time.sleep(0.1)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        others = [_start(db, "subprocess", env), _start(db, "local", env)]
        while _ok_rows(db) < CELLS - 4 and time.time() < deadline:  # the others go on, past A's stale claim
            time.sleep(0.2)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    procs = [stopped, *others]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    summaries = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ResultStore(db) as store:
        rows = store.rows(history=True)
    ok = Counter(r["values"]["h"] for r in rows if r["status"] == "ok")
    assert ok == Counter(range(8, 8 + CELLS)), ok  # every cell has exactly one result
    assert not [r for r in rows if r["status"] == "running"]  # no claim left behind
    assert sum(s["ran"] for s in summaries) == CELLS  # every result a run reported finished is in the store
    measured = [json.loads(line) for line in log.read_text().splitlines()]
    # the stopped run's cell in flight was measured again by the run that took it over; its own result was dropped
    assert len(measured) == CELLS + sum(s["discarded"] for s in summaries)
    assert summaries[0]["discarded"] >= 1 and any("discarded" in line for line in summaries[0]["left"])


def test_a_full_disk_is_one_line_keeps_the_results_and_leaves_no_claim(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.errors import UserError
    from dynconv_bench.execution.executors import LocalExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.suite import parse_suite

    db = tmp_path / "full.sqlite"
    monkeypatch.setenv("CONCURRENCY_LOG", str(tmp_path / "log"))
    measured: list[int] = []

    with ResultStore(db) as store:
        def fill_after_two(cell: dict, plugins: tuple = ()) -> dict:
            measured.append(1)
            if len(measured) == 3:  # from now on the store can grow no more: the disk is full
                pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
                store.conn.execute(f"PRAGMA max_page_count={pages}")
            return {**slow_cell(cell), "values": {"pad": "x" * 3000}}  # every row needs a page of its own

        with pytest.raises(UserError, match=r"full\.sqlite: the disk is full") as err:
            run_suite(parse_suite(suite_dict()), store, executor=LocalExecutor(fn=fill_after_two), progress=False)
        assert "\n" not in str(err.value)
    with ResultStore(db) as store:  # a full store reopens as what it is
        rows = store.rows(history=True)
    assert rows and all(r["status"] == "ok" for r in rows)  # what was stored is kept; no orphan claim
    assert 2 <= len(rows) < CELLS


def test_opening_a_current_store_writes_nothing(tmp_path) -> None:  # noqa: ANN001
    """So that a rerun on a full (or read-only) disk gets as far as its first real write."""
    db = tmp_path / "s.sqlite"
    ResultStore(db).close()
    before = db.read_bytes()
    with ResultStore(db) as store:
        assert store.count() == 0
    assert db.read_bytes() == before and not Path(f"{db}-wal").exists()


def test_a_second_store_in_one_process_keeps_the_first_ones_locks(tmp_path) -> None:  # noqa: ANN001
    """A heartbeat thread opens its own store: that must not let another process delete the WAL under us."""
    from dynconv_bench.execution.suite import parse_suite

    db = tmp_path / "w.sqlite"
    cells = parse_suite(suite_dict()).cells()
    first = ResultStore(db)
    first.put(cells[0], {"h": 0}, "ok")
    second = ResultStore(db)  # as the heartbeat thread does, while `first` is open
    # another process opens and closes the store: were our locks gone, it would checkpoint and delete the -wal
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('SELECT count(*) FROM results').fetchone(); c.close()", str(db)], check=True)
    assert Path(f"{db}-wal").exists()  # it knew it was not the last connection
    for i, cell in enumerate(cells[1:6], 1):
        first.put(cell, {"h": i}, "ok")
    second.close()
    first.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 6
