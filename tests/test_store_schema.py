"""The store's schema and opening (store_schema.py): bad paths named, a schema-1 store migrated, a foreign file,
a newer schema or a FIFO refused without a write."""

from __future__ import annotations

import os
import sqlite3

import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.store import ResultStore

from .test_store import make_cell


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
    cell = make_cell()
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


# -- issue 29: files that are not ours, schemas from the future -----------------------------------------
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
        store.put(make_cell(), {"x": 1}, "ok")
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
