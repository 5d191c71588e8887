"""ResultStore, the store's facade: a round trip through SQLite, WAL journal, a second connection reading."""

from __future__ import annotations

import sqlite3

import pytest

from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.store import ResultStore


def make_cell(variant: str = "static", kind: str = "params", **options: object) -> Cell:
    """A cell of suite `s` on cifar_resnet8 (the store tests' cell)."""
    return Cell("s", "cifar_resnet8", variant, variant, {"policy": "blocks"}, kind, dict(options))


def test_roundtrip_and_json_columns(tmp_path) -> None:  # noqa: ANN001
    with ResultStore(tmp_path / "r.sqlite") as store:
        cell = make_cell(batch_size=4)
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


def test_second_connection_sees_committed_rows(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as writer:
        writer.put(make_cell(), {"x": 1}, "ok")
        with ResultStore(path, readonly=True) as reader:
            assert reader.count() == 1
            with pytest.raises(sqlite3.OperationalError):
                reader.conn.execute("DELETE FROM results")
