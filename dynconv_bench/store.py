"""The results store: one SQLite row per measured cell, written in a transaction (WAL journal)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import UserError

SCHEMA_VERSION = 1

_SCHEMA = """
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
    UNIQUE (suite, backbone, variant, config_hash, kind, options_hash)
);
CREATE INDEX IF NOT EXISTS results_suite ON results (suite, kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

COLUMNS = ("id", "suite", "backbone", "variant", "variant_name", "config", "config_hash", "kind", "options",
           "options_hash", "values", "status", "error", "environment", "run_id", "started", "finished")
JSON_COLUMNS = ("config", "options", "values", "environment")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """SQLite results store. Every write is one transaction: a kill loses at most the cell in flight."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise UserError(f"results store not found: {self.path} (run a suite first, or pass --db PATH)")
        if not readonly and self.path.parent and not self.path.parent.exists():
            raise UserError(f"folder of the results store does not exist: {self.path.parent}")
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
            self.conn = sqlite3.connect(uri, uri=readonly, timeout=30.0, isolation_level=None)
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.conn.execute("SELECT count(*) FROM results").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a dynconv-bench results store ({exc})") from None

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- writes ----------------------------------------------------------------------------
    def put(self, cell: Any, values: dict[str, Any] | None, status: str, error: str | None = None,
            environment: dict[str, Any] | None = None, started: str | None = None, finished: str | None = None,
            run_id: str | None = None) -> None:
        """Insert or replace the row of `cell` (a suite.Cell) in one transaction."""
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
        row = (cell.suite, cell.backbone, cell.variant, cell.variant_name, _dumps(cell.config), cell.config_hash,
               cell.kind, _dumps(cell.options), cell.options_hash, _dumps(values), status, error,
               _dumps(environment), run_id, started, finished or utcnow())
        with self._transaction():
            self.conn.execute(
                "DELETE FROM results WHERE suite=? AND backbone=? AND variant=? AND config_hash=? AND kind=? "
                "AND options_hash=?", cell.key)
            self.conn.execute(f"INSERT INTO results ({', '.join(_q(c) for c in COLUMNS[1:])}) "
                              f"VALUES ({', '.join('?' * len(COLUMNS[1:]))})", row)

    def delete_suite(self, suite: str) -> int:
        """Remove every row of `suite`; return how many."""
        with self._transaction():
            return self.conn.execute("DELETE FROM results WHERE suite=?", (suite,)).rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    # -- reads -----------------------------------------------------------------------------
    def done_keys(self, suite: str) -> set[tuple[str, ...]]:
        """Keys of the cells of `suite` that finished with status ok."""
        cur = self.conn.execute(
            "SELECT suite, backbone, variant, config_hash, kind, options_hash FROM results "
            "WHERE suite=? AND status='ok'", (suite,))
        return {tuple(r) for r in cur.fetchall()}

    def suites(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT suite FROM results ORDER BY suite")]

    def rows(self, suite: str | None = None, kind: str | None = None, status: str | None = None) -> list[dict]:
        """Rows as dicts with JSON columns decoded."""
        where, args = [], []
        for col, val in (("suite", suite), ("kind", kind), ("status", status)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = f"SELECT {', '.join(_q(c) for c in COLUMNS)} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        out = []
        for r in self.conn.execute(sql + " ORDER BY id", args):
            row = dict(zip(COLUMNS, r))
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] else None
            out.append(row)
        return out

    def dataframe(self, suite: str | None = None, kind: str | None = None, status: str | None = None):  # noqa: ANN201
        """The rows as a pandas DataFrame (JSON columns decoded into dicts)."""
        import pandas as pd

        return pd.DataFrame(self.rows(suite, kind, status), columns=list(COLUMNS))

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM results").fetchone()[0]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _q(col: str) -> str:
    return f'"{col}"'


def _dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    return json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=True)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
