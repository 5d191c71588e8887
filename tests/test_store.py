"""The SQLite results store: every run kept, the latest row per cell read, claims, migration, transactional writes."""

from __future__ import annotations

import os
import sqlite3

import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import Cell


def _cell(variant: str = "static", kind: str = "params", **options: object) -> Cell:
    return Cell("s", "cifar_resnet8", variant, variant, {"policy": "blocks"}, kind, dict(options))


def test_roundtrip_and_json_columns(tmp_path) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        cell = _cell(batch_size=4)
        store.put(cell, {"total": 123, "nested": {"a": [1, 2]}}, "ok", environment={"host": "h"},
                  started="2026-01-01T00:00:00+00:00", run_id="r1")
        (row,) = store.rows()
        assert row["values"] == {"total": 123, "nested": {"a": [1, 2]}}
        assert row["options"] == {"batch_size": 4} and row["config"] == {"policy": "blocks"}
        assert row["environment"] == {"host": "h"} and row["run_id"] == "r1"
        assert (row["config_hash"], row["options_hash"]) == (cell.config_hash, cell.options_hash)
        assert row["finished"] and row["started"] == "2026-01-01T00:00:00+00:00"
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        df = store.dataframe(suite="s")
        assert list(df["variant"]) == ["static"] and df["values"].iloc[0]["total"] == 123


def test_done_keys_latest_row_per_cell_and_history_kept(tmp_path) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        a, b = _cell("static"), _cell("static-se")
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


def test_failed_write_rolls_back(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        cell = _cell()
        store.put(cell, {"x": 1}, "ok")
        with pytest.raises(ValueError, match="status"):
            store.put(cell, {"x": 2}, "maybe")
        bad = {"x": object()}  # JSON serialises it as a string: still no partial write
        store.put(_cell("static-se"), bad, "ok")
        with pytest.raises(sqlite3.Error), store._transaction():
            store.conn.execute("DELETE FROM results")
            store.conn.execute("INSERT INTO nowhere VALUES (1)")
        assert store.count() == 2 and store.rows()[0]["values"] == {"x": 1}


def test_second_connection_sees_committed_rows(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as writer:
        writer.put(_cell(), {"x": 1}, "ok")
        with ResultStore(path, readonly=True) as reader:
            assert reader.count() == 1
            with pytest.raises(sqlite3.OperationalError):
                reader.conn.execute("DELETE FROM results")


def test_bad_paths_are_user_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="results store not found"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)
    with pytest.raises(UserError, match="folder of the results store does not exist"):
        ResultStore(tmp_path / "no" / "dir.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="not a dynconv-bench results store"):
        ResultStore(junk)
    assert junk.read_bytes() == b"this is not a database" * 100  # left as it was


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_live_owner_keeps_the_cell_dead_owner_is_taken_over(tmp_path) -> None:  # noqa: ANN001
    import platform

    from dynconv_bench.execution.store import owner_alive, utcnow

    with ResultStore(tmp_path / "r.sqlite") as store:
        a, b = _cell("static"), _cell("static-se")
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
        assert set(store.active_owners()) == {other_live, store_owner()}
        assert store.count() == 1  # only the abandoned claim is a finished row yet
        store.finish(mine, b, {"x": 3}, "ok", run_id="run2")
        (row,) = store.rows(status="ok")
        assert (row["id"], row["values"], row["heartbeat"]) == (mine, {"x": 3}, None)
        assert store.done_keys("s") == {b.key}
        old = store.conn.execute("SELECT MAX(id) FROM results").fetchone()[0]
        assert store.claim(b, "run3", after_id=old) is not None  # --force: done before this run, so redo
        store.put(_cell("static-se"), {"x": 4}, "ok")  # ... while another run finished it meanwhile
        assert store.claim(b, "run4", after_id=old) is None
        claim = store.claim(_cell("static", kind="macs"), "run5")
        store.release([claim])
        assert all(r["id"] != claim for r in store.rows(history=True))


def store_owner() -> str:
    from dynconv_bench.execution.store import this_owner

    return this_owner()


def test_heartbeat_age_decides_liveness() -> None:
    from datetime import datetime, timedelta, timezone

    from dynconv_bench.execution.store import STALE_AFTER_S, owner_alive

    old = (datetime.now(timezone.utc) - timedelta(seconds=STALE_AFTER_S + 5)).isoformat()
    assert not owner_alive(store_owner(), old)  # a live pid with a stale heartbeat: pid reused
    assert owner_alive("elsewhere:1", datetime.now(timezone.utc).isoformat())  # another host: heartbeat only
    assert not owner_alive("elsewhere:1", None)


def test_directory_or_unwritable_db_names_the_cause(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=r"is a directory; pass a file path"):
        ResultStore(tmp_path)
    with pytest.raises(UserError, match=r"is a directory"):
        ResultStore(tmp_path, readonly=True)
    with pytest.raises(UserError, match=r"cannot write the results store /proc/r.sqlite: "):
        ResultStore("/proc/r.sqlite")  # exists as a folder, not writable even by root
    assert not (tmp_path / "r.sqlite").exists()


def test_schema_v1_store_is_migrated_with_its_rows(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    cell = _cell()
    conn.execute("INSERT INTO results (suite, backbone, variant, variant_name, config, config_hash, kind, options, "
                 'options_hash, "values", status, run_id, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
                 (*cell.key[:3], "static", '{"policy": "blocks"}', cell.config_hash, "params", "{}", cell.options_hash,
                  '{"total": 5}', "ok", "r0", "2026-01-01T00:00:00+00:00"))
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    with ResultStore(path, readonly=True) as reader:  # read as it is, without writing
        assert [r["values"] for r in reader.rows()] == [{"total": 5}] and reader.rows()[0]["owner"] is None
    with ResultStore(path) as store:
        assert store.conn.execute("SELECT value FROM meta").fetchone()[0] == "2"
        assert store.done_keys("s") == {cell.key} and store.rows()[0]["run_id"] == "r0"
        store.put(cell, {"total": 6}, "ok")  # the old UNIQUE constraint is gone: history works
        assert store.count(history=True) == 2
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99'")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="newer dynconv-bench"):
        ResultStore(path)


V1_SCHEMA = """
CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, suite TEXT NOT NULL, backbone TEXT NOT NULL,
    variant TEXT NOT NULL, variant_name TEXT NOT NULL, config TEXT NOT NULL, config_hash TEXT NOT NULL,
    kind TEXT NOT NULL, options TEXT NOT NULL, options_hash TEXT NOT NULL, "values" TEXT, status TEXT NOT NULL,
    error TEXT, environment TEXT, run_id TEXT, started TEXT, finished TEXT,
    UNIQUE (suite, backbone, variant, config_hash, kind, options_hash));
CREATE INDEX results_suite ON results (suite, kind);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
"""


# -- issue 29: files that are not ours, schemas from the future, stalled claims -------------------------
def test_a_foreign_file_with_a_results_table_is_refused_without_a_write(tmp_path) -> None:  # noqa: ANN001
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:  # a `results` table with our read columns, but not our store
        conn.execute('CREATE TABLE results (id INTEGER PRIMARY KEY, suite TEXT, backbone TEXT, variant TEXT, '
                     'kind TEXT, "values" TEXT, status TEXT)')
    conn.close()
    before = other.read_bytes()
    with pytest.raises(UserError, match="another application.*lacks"):
        ResultStore(other)
    assert other.read_bytes() == before  # still in rollback-journal mode: header bytes 18-19 untouched
    assert not (tmp_path / "other.sqlite-wal").exists()


def test_a_store_of_a_newer_schema_is_refused_for_reading_too(tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "new.sqlite"
    with ResultStore(db) as store:
        store.put(_cell(), {"x": 1}, "ok")
        store.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    for readonly in (True, False):
        with pytest.raises(UserError, match="newer dynconv-bench .*schema 99"):
            ResultStore(db, readonly=readonly)


def test_a_fifo_or_device_is_not_a_store(tmp_path) -> None:  # noqa: ANN001
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for readonly in (True, False):
        with pytest.raises(UserError, match="not a regular file"):
            ResultStore(fifo, readonly=readonly)
    with pytest.raises(UserError, match="not a regular file"):
        ResultStore("/dev/null")
    assert not os.path.exists("/dev/null-journal") and not os.path.exists("/dev/null-wal")


def test_a_stalled_claim_is_named_by_the_report_and_by_the_run_that_left_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.executors import LocalExecutor
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.suite import parse_suite
    from dynconv_bench.reporting.history import claims_note
    from dynconv_bench.reporting.report import load_results

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

    monkeypatch.setattr("dynconv_bench.execution.store.owner_alive", lambda owner, beat, stale_after=0: False)
    with ResultStore(db) as store:  # a stale claim is taken over (the run measures both)
        assert run_suite(suite, store, executor=LocalExecutor(fn=params), progress=False).ran == 2
        claim = store.claim(stalled, "r1", owner="otherhost:1")  # stalled again: the report must say so
    df = load_results(db, "s")
    note = claims_note(df, "s")
    assert note is not None and "cifar_resnet8/static-se/params has no result yet" in note
    assert "heartbeat stopped" in note and "rerun" in note
    monkeypatch.setattr("dynconv_bench.execution.store.owner_alive", lambda owner, beat, stale_after=0: True)
    with ResultStore(db) as store:  # a live holder: the run leaves the cell and says to whom
        summary = run_suite(suite, store, executor=LocalExecutor(fn=params), progress=False, force=True)
    assert summary.ran == 1 and summary.elsewhere == 1
    (line,) = summary.handoff_lines()
    assert "static-se" in line and "otherhost:1" in line and "still measuring it" in line
