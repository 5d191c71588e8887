"""The results store's schema, and what a file must be before the store opens it for writing.

Checks never open the database file by any handle but SQLite's: closing another descriptor of it would drop
this process's POSIX locks while a connection is open, and another process could then delete a live WAL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from ..errors import UserError
from ..files import check_path_name

SCHEMA_VERSION = 2
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite TEXT NOT NULL,
    backbone TEXT NOT NULL,
    variant TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    options TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    "values" TEXT,
    status TEXT NOT NULL,
    error TEXT,
    environment TEXT,
    run_id TEXT,
    started TEXT,
    finished TEXT,
    owner TEXT,
    heartbeat TEXT
);
CREATE INDEX IF NOT EXISTS results_cell ON results (suite, backbone, variant, config_hash, kind, options_hash);
CREATE INDEX IF NOT EXISTS results_run ON results (run_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

COLUMNS = ("id", "suite", "backbone", "variant", "variant_name", "config", "config_hash", "kind", "options",
           "options_hash", "values", "status", "error", "environment", "run_id", "started", "finished", "owner",
           "heartbeat")
JSON_COLUMNS = ("config", "options", "values", "environment")
READ_COLUMNS = ("id", "suite", "backbone", "variant", "kind", "values", "status")  # what a report needs at least

def parse_schema_version(text: object, path: Path) -> int:
    try:
        return int(str(text))
    except ValueError:
        raise UserError(f"{path} is a damaged dynconv-bench results store: meta.schema_version is {text!r}, "
                        f"not a number") from None


def read_schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The store's schema version (1 when it has no meta table); UserError for a newer one than this code reads."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if "meta" in tables else None
    version = parse_schema_version(row[0], path) if row else 1
    if version > SCHEMA_VERSION:
        raise UserError(newer_schema_line(path, version))
    return version


def newer_schema_line(path: Path, version: int) -> str:
    return (f"{path} was written by a newer dynconv-bench (store schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade dynconv-bench or use another --db")


_OURS = {"results", "meta", "sqlite_sequence"}
_V1_COLUMNS = tuple(c for c in COLUMNS if c not in ("owner", "heartbeat"))  # the one-row-per-cell schema


def read_only_uri(path: Path, immutable: bool = False) -> str:
    """The SQLite URI that opens `path` read-only. Quoted from the file system's bytes: a name that is no valid
    UTF-8 (`--db $'\\xff.sqlite'`, held as surrogate escapes) names the same file, not a UnicodeEncodeError."""
    return f"file:{quote(os.fsencode(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def check_foreign_file(path: Path) -> None:
    """Refuse an existing SQLite file that is neither empty nor a dynconv-bench store, without writing to it.

    Read through a read-only connection (SQLite shares one lock per file within a process, so closing it is safe).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True, timeout=30.0)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {r[1] for r in conn.execute("PRAGMA table_info(results)")} if "results" in tables else set()
            version = read_schema_version(conn, path) if tables else SCHEMA_VERSION
    except sqlite3.Error as exc:
        raise UserError(sqlite_error_line(exc, path)) from None
    if not tables:
        return
    needed = set(COLUMNS if version >= 2 else _V1_COLUMNS)
    if tables <= _OURS and "results" in tables and "meta" in tables and not needed <= columns:
        raise UserError(f"{path} is a damaged dynconv-bench results store: no column(s) "
                        f"{', '.join(c for c in COLUMNS if c in needed - columns)}")
    if not tables <= _OURS or "results" not in tables or not needed <= columns:
        what = f"tables: {', '.join(sorted(tables))}"
        if tables <= _OURS and "results" in tables:
            what += f"; its results table lacks {', '.join(sorted(needed - columns))}"
        raise UserError(f"{path} is an SQLite file of another application ({what}); "
                        f"dynconv-bench writes only to its own stores: pass another --db")


def sqlite_error_line(exc: sqlite3.Error, path: Path) -> str:
    """One line saying what an SQLite error means for the store at `path`."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "disk is full" in str(exc):
        return (f"cannot write the results store {path}: the disk is full (results written before are kept; "
                f"free space and rerun to finish the rest)")
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in str(exc):
        return f"{path} is not a dynconv-bench results store ({exc})"
    if name.startswith("SQLITE_BUSY"):
        return f"results store {path} stayed locked by another process for 30 s; retry when it is idle"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        return f"cannot write the results store {path}: {exc}"
    return f"results store {path}: {exc}"


def check_store_path(path: Path, readonly: bool) -> None:
    """Raise a UserError naming the real reason a path cannot be the store. Never opens the file itself."""
    check_path_name(path, "results store")  # the name checks every output path gets (length, NUL, encoding)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UserError(f"cannot open the results store {path}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"results store {path} is a directory; pass a file path such as {path / 'results.sqlite'}")
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"results store {path} is not a regular file (a device, FIFO or socket); pass a file path "
                        f"such as results.sqlite")
    if readonly:
        if mode is None:
            raise UserError(f"results store not found: {path} (run a suite first, or pass --db PATH)")
        return
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"folder of the results store does not exist: {folder}")
    if mode is not None and not os.access(path, os.R_OK | os.W_OK):
        raise UserError(f"cannot write the results store {path}: permission denied")
    if not os.access(folder, os.W_OK | os.X_OK):  # SQLite writes its -wal and -shm files beside the store
        raise UserError(f"cannot write the results store {path}: its folder {folder} is not writable "
                        f"(SQLite keeps its -wal and -shm files beside the store)")
