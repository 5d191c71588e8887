"""The results store's schema and its migrations: opening (or creating) the SQLite file, version checks, and what
a file must be before the store opens it for writing (a link is followed to an empty file or a store of ours).

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


def open_store(path: Path, readonly: bool) -> tuple[sqlite3.Connection, list[str], int]:
    """(connection, the results table's columns, schema version) of the store at `path`; for writing, created or
    migrated to this schema first. A UserError names the reason a path cannot be the store."""
    check_store_path(path, readonly)  # no os.open of the file: closing any fd of it drops this process's locks
    if not readonly:
        check_foreign_file(path)  # read-only, before WAL mode: that alone rewrites the file's header
    conn = None
    try:
        if readonly:  # no -wal: no writer is open, and a snapshot read must not create -wal/-shm files
            immutable = not Path(f"{path}-wal").exists()
            conn = sqlite3.connect(read_only_uri(path, immutable), uri=True, timeout=30.0, isolation_level=None)
        else:
            conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn, path)
        conn.execute("SELECT count(*) FROM results").fetchone()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    except sqlite3.Error as exc:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        raise UserError(sqlite_error_line(exc, path)) from None
    missing = [c for c in (READ_COLUMNS if readonly else COLUMNS) if c not in columns]
    if missing:
        conn.close()
        raise UserError(f"{path} is a damaged dynconv-bench results store: no column(s) {', '.join(missing)}")
    return conn, columns, read_schema_version(conn, path) if readonly else SCHEMA_VERSION


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or bring a store of an older schema up to this one in one transaction."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    version = SCHEMA_VERSION
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = parse_schema_version(row[0], path) if row else 1
    elif "results" in tables:
        version = 1
    if version > SCHEMA_VERSION:
        raise UserError(newer_schema_line(path, version))
    if "results" in tables and "meta" in tables and version == SCHEMA_VERSION:
        return  # nothing to write: opening a store must work on a full disk too
    with Transaction(conn):
        if "results" in tables and version < SCHEMA_VERSION:  # v1: one row per cell, no claims
            conn.execute("ALTER TABLE results RENAME TO results_v1")
            conn.execute("DROP INDEX IF EXISTS results_suite")
        for statement in SCHEMA_SQL.split(";"):
            if statement.strip():
                conn.execute(statement)
        if "results" in tables and version < SCHEMA_VERSION:
            old = [r[1] for r in conn.execute("PRAGMA table_info(results_v1)")]
            cols = ", ".join(quoted(c) for c in COLUMNS if c in old)
            conn.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM results_v1 ORDER BY id")
            conn.execute("DROP TABLE results_v1")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not exc_type:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite ends it itself on some errors (a full disk): keep the first error
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


def quoted(col: str) -> str:
    """A column name as SQL (`values` is a keyword)."""
    return f'"{col}"'
