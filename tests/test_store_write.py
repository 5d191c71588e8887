"""Claiming and writing the store (store_write.py): transactions roll back, a live owner keeps its cell, a dead
one's claim is taken over, a stalled claim is named by the report and by the run that left it."""

from __future__ import annotations

import os
import sqlite3

import pytest

from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.store_read import owner_alive
from dynconv_bench.execution.store_write import this_owner, utcnow

from .test_store import make_cell


def test_failed_write_rolls_back(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        cell = make_cell()
        store.put(cell, {"x": 1}, "ok")
        with pytest.raises(ValueError, match="status"):
            store.put(cell, {"x": 2}, "maybe")
        bad = {"x": object()}  # JSON serialises it as a string: still no partial write
        store.put(make_cell("static-se"), bad, "ok")
        with pytest.raises(sqlite3.Error), store._transaction():
            store.conn.execute("DELETE FROM results")
            store.conn.execute("INSERT INTO nowhere VALUES (1)")
        assert store.count() == 2 and store.rows()[0]["values"] == {"x": 1}


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_live_owner_keeps_the_cell_dead_owner_is_taken_over(tmp_path) -> None:  # noqa: ANN001
    import platform

    with ResultStore(tmp_path / "r.sqlite") as store:
        a, b = make_cell("static"), make_cell("static-se")
        other_live = f"{platform.node()}:{os.getppid()}"  # a process that exists, not this one
        assert store.claim(a, "run1", owner=other_live) is not None
        assert store.claim(a, "run2") is None  # held by a live run
        dead = f"{platform.node()}:{_dead_pid()}"
        stale = store.claim(b, "run1", owner=dead)
        assert not owner_alive(dead, utcnow())
        mine = store.claim(b, "run2")
        assert mine is not None and mine != stale
        rows = {r["id"]: r for r in store.rows(history=True)}
        assert rows[stale]["status"] == "failed" and "abandoned" in rows[stale]["error"]
        assert rows[mine]["status"] == "running" and rows[mine]["heartbeat"]
        assert set(store.active_owners()) == {other_live, this_owner()}
        assert store.count() == 1  # only the abandoned claim is a finished row yet
        store.finish(mine, b, {"x": 3}, "ok", run_id="run2")
        (row,) = store.rows(status="ok")
        assert (row["id"], row["values"], row["heartbeat"]) == (mine, {"x": 3}, None)
        assert store.done_keys("s") == {b.key}
        old = store.conn.execute("SELECT MAX(id) FROM results").fetchone()[0]
        assert store.claim(b, "run3", after_id=old) is not None  # --force: done before this run, so redo
        store.put(make_cell("static-se"), {"x": 4}, "ok")  # ... while another run finished it meanwhile
        assert store.claim(b, "run4", after_id=old) is None
        claim = store.claim(make_cell("static", kind="macs"), "run5")
        store.release([claim])
        assert all(r["id"] != claim for r in store.rows(history=True))


def test_a_stalled_claim_is_named_by_the_report_and_by_the_run_that_left_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.executors import LocalExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.suite import parse_suite
    from dynconv_bench.reporting.history import claims_note
    from dynconv_bench.reporting.rows import load_results

    db = tmp_path / "c.sqlite"
    suite = parse_suite({"name": "s", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"params": {}}})
    stalled = suite.cells()[1]
    with ResultStore(db) as store:  # a run on another host claimed it, then stopped beating
        claim = store.claim(stalled, "r0", owner="otherhost:1")
        old = "2020-01-01T00:00:00+00:00"
        store.conn.execute("UPDATE results SET heartbeat=? WHERE id=?", (old, claim))

    def params(cell: dict, plugins: tuple = ()) -> dict:
        return {"values": {"total": 1}, "status": "ok", "error": None, "environment": {}, "started": None,
                "finished": None}

    _owners_alive(monkeypatch, False)
    with ResultStore(db) as store:  # a stale claim is taken over (the run measures both)
        assert run_suite(suite, store, executor=LocalExecutor(fn=params), progress=False).ran == 2
        claim = store.claim(stalled, "r1", owner="otherhost:1")  # stalled again: the report must say so
    df = load_results(db, "s")
    note = claims_note(df, "s")
    assert note is not None and "cifar_resnet8/static-se/params has no result yet" in note
    assert "heartbeat stopped" in note and "rerun" in note
    _owners_alive(monkeypatch, True)
    with ResultStore(db) as store:  # a live holder: the run leaves the cell and says to whom
        summary = run_suite(suite, store, executor=LocalExecutor(fn=params), progress=False, force=True)
    assert summary.ran == 1 and summary.elsewhere == 1
    (line,) = summary.handoff_lines()
    assert "static-se" in line and "otherhost:1" in line and "still measuring it" in line


def _owners_alive(monkeypatch: pytest.MonkeyPatch, alive: bool) -> None:
    """Every claim's owner alive (or dead): for the claims a run takes over and for those it and reports list."""
    for module in ("store_read", "store_write"):
        monkeypatch.setattr(f"dynconv_bench.execution.{module}.owner_alive", lambda owner, beat, stale_after=0: alive)
