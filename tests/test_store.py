"""The SQLite results store: one row per cell, ok rows mark cells done, writes are transactional."""

from __future__ import annotations

import sqlite3

import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.store import ResultStore
from dynconv_bench.suite import Cell


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


def test_done_keys_only_ok_rows_and_one_row_per_cell(tmp_path) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        a, b = _cell("static"), _cell("static-se")
        store.put(a, {"x": 1}, "ok")
        store.put(b, None, "failed", error="boom")
        assert store.done_keys("s") == {a.key}
        assert store.done_keys("other") == set()
        store.put(b, {"x": 2}, "ok")  # a rerun replaces the failed row
        assert store.count() == 2
        assert store.done_keys("s") == {a.key, b.key}
        assert [r["values"] for r in store.rows(status="ok")] == [{"x": 1}, {"x": 2}]
        assert store.suites() == ["s"]
        assert store.delete_suite("s") == 2 and store.count() == 0


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
