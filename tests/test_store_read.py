"""Reading the store (store_read.py): the latest row per cell, history kept, runs, a claim's liveness."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.store_read import STALE_AFTER_S, owner_alive
from dynconv_bench.execution.store_write import this_owner

from .test_store import make_cell


def test_done_keys_latest_row_per_cell_and_history_kept(tmp_path) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        a, b = make_cell("static"), make_cell("static-se")
        store.put(a, {"x": 1}, "ok", run_id="r1")
        store.put(b, None, "failed", error="boom", run_id="r1")
        assert store.done_keys("s") == {a.key}
        assert store.done_keys("other") == set()
        store.put(b, {"x": 2}, "ok", run_id="r2")  # a rerun adds a row; the failed one stays as history
        assert store.count() == 2 and store.count(history=True) == 3
        assert store.done_keys("s") == {a.key, b.key}
        assert [r["values"] for r in store.rows(status="ok")] == [{"x": 1}, {"x": 2}]
        assert [r["status"] for r in store.rows(history=True)] == ["ok", "failed", "ok"]
        assert [r["variant"] for r in store.rows(run_id="r2")] == ["static-se"]
        store.put(a, None, "failed", error="late", run_id="r2")  # the latest row counts, even a failure
        assert store.done_keys("s") == {b.key} and store.rows(status="failed")[0]["error"] == "late"
        assert [(r["run_id"], r["cells"], r["failed"]) for r in store.runs()] == [("r1", 2, 1), ("r2", 2, 1)]
        assert store.suites() == ["s"]
        assert store.delete_suite("s") == 4 and store.count(history=True) == 0


def test_heartbeat_age_decides_liveness() -> None:
    old = (datetime.now(timezone.utc) - timedelta(seconds=STALE_AFTER_S + 5)).isoformat()
    assert not owner_alive(this_owner(), old)  # a live pid with a stale heartbeat: pid reused
    assert owner_alive("elsewhere:1", datetime.now(timezone.utc).isoformat())  # another host: heartbeat only
    assert not owner_alive("elsewhere:1", None)
