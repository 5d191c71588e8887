"""The results store: SQLite, every run of every cell kept (history), each write one transaction (WAL journal).

A run claims a cell before measuring it: a `running` row naming its owner (host:pid) with a heartbeat.
Concurrent runs skip cells another live run holds or finished after they started; a dead owner's claim is
taken over (a result of a claim taken over is discarded, never a second row). Reads give the latest finished
row per cell. Only empty SQLite files and stores are written to (checks and schema: store_schema.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sqlite3
import sys
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import UserError
from .store_schema import (
    COLUMNS,
    JSON_COLUMNS,
    READ_COLUMNS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    check_foreign_file,
    check_store_path,
    newer_schema_line,
    parse_schema_version,
    read_only_uri,
    read_schema_version,
    sqlite_error_line,
)
from .suite import KEY_FIELDS


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (a bad value warns and keeps the default)."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
        if not 0 < value < 1e6:
            raise ValueError
        return value
    except ValueError:
        sys.stderr.write(f"dynconv-bench: warning: {name}={text!r} is not a number of seconds in (0, 1e6); "
                         f"using {default:g}\n")
        return default


# A claim whose heartbeat is older than STALE_AFTER_S belongs to a dead or stopped run and is taken over; both
# can be set for slow shared file systems (and short tests): DYNCONV_BENCH_STALE_AFTER, DYNCONV_BENCH_HEARTBEAT.
HEARTBEAT_EVERY_S = _env_seconds("DYNCONV_BENCH_HEARTBEAT", 15.0)
STALE_AFTER_S = max(_env_seconds("DYNCONV_BENCH_STALE_AFTER", 120.0), 2 * HEARTBEAT_EVERY_S)
ABANDONED = "abandoned: "  # error text prefix of a claim closed because its run died

STATUSES = ("ok", "failed", "running")
_KEY_SQL = " AND ".join(f"{f}=?" for f in KEY_FIELDS)
_LATEST = (f"id IN (SELECT MAX(id) FROM results WHERE status IN ('ok', 'failed') GROUP BY {', '.join(KEY_FIELDS)})")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_owner() -> str:
    """host:pid of this process, as written in the claims it makes."""
    return f"{platform.node()}:{os.getpid()}"


class ResultStore:
    """SQLite results store. Every write is one transaction: a kill loses at most the cell in flight."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        check_store_path(self.path, readonly)  # no os.open of the file: closing any fd of it drops this process's locks
        self.malformed: list[int] = []  # ids of the rows read so far whose JSON did not decode (rows() leaves them out)
        if not readonly:
            check_foreign_file(self.path)  # read-only, before WAL mode: that alone rewrites the file's header
        try:
            if readonly:  # no -wal: no writer is open, and a snapshot read must not create -wal/-shm files
                immutable = not Path(f"{self.path}-wal").exists()
                self.conn = sqlite3.connect(read_only_uri(self.path, immutable), uri=True, timeout=30.0,
                                            isolation_level=None)
            else:
                self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
            self.conn.execute("SELECT count(*) FROM results").fetchone()
            self._columns = [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]
        except sqlite3.Error as exc:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self.conn.close()
            raise UserError(sqlite_error_line(exc, self.path)) from None
        missing = [c for c in (READ_COLUMNS if readonly else COLUMNS) if c not in self._columns]
        if missing:
            self.conn.close()
            raise UserError(f"{self.path} is a damaged dynconv-bench results store: no column(s) {', '.join(missing)}")
        if readonly:
            self.schema_version = read_schema_version(self.conn, self.path)

    def _migrate(self) -> None:
        """Create the schema, or bring a store of an older schema up to this one in one transaction."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = SCHEMA_VERSION
        if "meta" in tables:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = parse_schema_version(row[0], self.path) if row else 1
        elif "results" in tables:
            version = 1
        if version > SCHEMA_VERSION:
            raise UserError(newer_schema_line(self.path, version))
        if "results" in tables and "meta" in tables and version == SCHEMA_VERSION:
            return  # nothing to write: opening a store must work on a full disk too
        with self._transaction():
            if "results" in tables and version < SCHEMA_VERSION:  # v1: one row per cell, no claims
                self.conn.execute("ALTER TABLE results RENAME TO results_v1")
                self.conn.execute("DROP INDEX IF EXISTS results_suite")
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            if "results" in tables and version < SCHEMA_VERSION:
                old = [r[1] for r in self.conn.execute("PRAGMA table_info(results_v1)")]
                cols = ", ".join(_q(c) for c in COLUMNS if c in old)
                self.conn.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM results_v1 ORDER BY id")
                self.conn.execute("DROP TABLE results_v1")
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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
            run_id: str | None = None) -> int:
        """Add a finished row for `cell` (a suite.Cell) in one transaction; earlier rows stay as history."""
        with self._transaction():
            return self._insert(cell, values, status, error, environment, run_id, started, finished or utcnow())

    def _insert(self, cell: Any, values: dict[str, Any] | None, status: str, error: str | None,
                environment: dict[str, Any] | None, run_id: str | None, started: str | None, finished: str | None,
                owner: str | None = None, heartbeat: str | None = None) -> int:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        row = (cell.suite, cell.backbone, cell.variant, cell.variant_name, _dumps(cell.stored_config), cell.config_hash,
               cell.kind, _dumps(cell.options), cell.options_hash, _dumps(values), status, error,
               _dumps(environment), run_id, started, finished, owner, heartbeat)
        cur = self.conn.execute(f"INSERT INTO results ({', '.join(_q(c) for c in COLUMNS[1:])}) "
                                f"VALUES ({', '.join('?' * len(COLUMNS[1:]))})", row)
        return int(cur.lastrowid)

    def claim(self, cell: Any, run_id: str, owner: str | None = None, after_id: int | None = None,
              running: Collection[int] = ()) -> int | None:
        """Mark `cell` as being measured by `owner`; the claim's row id, or None when another run has it.

        A live claim of another owner keeps the cell; a dead owner's claim is closed as failed and taken
        over. With `after_id` (the largest row id when the run started) and `running` (the ids of the claims
        open then), a cell with a result newer than the run's start is done: another run measured it meanwhile.
        """
        owner = owner or this_owner()
        with self._transaction():
            if after_id is not None and self.newer_result(cell, after_id, running):
                return None
            for cid, other, beat in self.conn.execute(
                    f"SELECT id, owner, heartbeat FROM results WHERE {_KEY_SQL} AND status='running'",
                    cell.key).fetchall():
                if other != owner and owner_alive(other, beat):
                    return None
                self.conn.execute("UPDATE results SET status='failed', finished=?, error=? WHERE id=?",
                                  (utcnow(), f"{ABANDONED}the run that claimed it ({other}) stopped without a "
                                             "result", cid))
            now = utcnow()
            return self._insert(cell, None, "running", None, None, run_id, now, None, owner, now)

    def newer_result(self, cell: Any, after_id: int, running: Collection[int] = ()) -> bool:
        """Whether `cell` has a result written after row `after_id`, or by a claim in `running` (not abandoned)."""
        marks = ",".join("?" * len(running))
        newer = f"(id>? OR id IN ({marks}))" if running else "id>?"
        return self.conn.execute(
            f"SELECT 1 FROM results WHERE {_KEY_SQL} AND status IN ('ok', 'failed') AND {newer} "
            f"AND (error IS NULL OR error NOT LIKE '{ABANDONED}%') LIMIT 1",
            (*cell.key, after_id, *running)).fetchone() is not None

    def open_claims(self) -> tuple[int, list[int]]:
        """(the largest row id, the ids of the claims open now), in one snapshot: where a run starts, for `claim`."""
        with self._transaction():
            return (self.conn.execute("SELECT MAX(id) FROM results").fetchone()[0] or 0,
                    [r[0] for r in self.conn.execute("SELECT id FROM results WHERE status='running'")])

    def finish(self, claim_id: int, cell: Any, values: dict[str, Any] | None, status: str, error: str | None = None,
               environment: dict[str, Any] | None = None, started: str | None = None, finished: str | None = None,
               run_id: str | None = None, owner: str | None = None) -> int | None:
        """Turn a claim into the cell's result; None (nothing written) when another run took the cell over.

        A claim is taken over only when its heartbeat went stale (this run was stopped or starved): the other
        run's measurement, finished or under way, is the cell's, and a second row would measure it twice.
        """
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
        owner = owner or this_owner()
        with self._transaction():
            cur = self.conn.execute(
                'UPDATE results SET "values"=?, status=?, error=?, environment=?, started=?, finished=?, heartbeat=? '
                "WHERE id=? AND status='running' AND owner=?",
                (_dumps(values), status, error, _dumps(environment), started, finished or utcnow(), None, claim_id,
                 owner))
            if cur.rowcount:
                return claim_id
            holder = self.holder(cell)
            if (holder is not None and holder["owner"] != owner) or self.newer_result(cell, claim_id):
                return None
            return self._insert(cell, values, status, error, environment, run_id, started, finished or utcnow())

    def holder(self, cell: Any) -> dict[str, Any] | None:
        """The open claim on `cell` (owner, heartbeat age in s, alive), or None."""
        row = self.conn.execute(f"SELECT owner, heartbeat FROM results WHERE {_KEY_SQL} AND status='running' "
                                "ORDER BY id DESC LIMIT 1", cell.key).fetchone()
        if row is None:
            return None
        return {"owner": row[0], "age_s": _age_s(row[1]), "alive": owner_alive(row[0], row[1])}

    def open_claims_of(self, suite: str | None = None) -> list[dict[str, Any]]:
        """Cells claimed now (of `suite`, or all): suite, backbone, variant, kind, owner, heartbeat age (s), alive."""
        if "owner" not in self._columns:
            return []
        rows = self.conn.execute("SELECT suite, backbone, variant, kind, owner, heartbeat FROM results WHERE "
                                 "status='running'" + (" AND suite=?" if suite else "") + " ORDER BY id",
                                 (suite,) if suite else ()).fetchall()
        return [{"suite": s, "backbone": b, "variant": v, "kind": k, "owner": who, "age_s": _age_s(beat),
                 "alive": owner_alive(who, beat)} for s, b, v, k, who, beat in rows]

    def release(self, claim_ids: list[int], owner: str | None = None) -> None:
        """Drop claims that will not be finished (an interrupted run)."""
        if claim_ids:
            with self._transaction():
                self.conn.executemany("DELETE FROM results WHERE id=? AND status='running' AND owner=?",
                                      [(i, owner or this_owner()) for i in claim_ids])

    def heartbeat(self, owner: str | None = None) -> None:
        """Tell other runs that `owner`'s claims are alive."""
        with self._transaction():
            self.conn.execute("UPDATE results SET heartbeat=? WHERE status='running' AND owner=?",
                              (utcnow(), owner or this_owner()))

    def delete_suite(self, suite: str) -> int:
        """Remove every row of `suite`, history included; return how many."""
        with self._transaction():
            return self.conn.execute("DELETE FROM results WHERE suite=?", (suite,)).rowcount

    def _transaction(self) -> _Transaction:
        if self.readonly:
            raise UserError(f"results store {self.path} was opened read-only")
        return _Transaction(self.conn)

    # -- reads -----------------------------------------------------------------------------
    def done_keys(self, suite: str) -> set[tuple[str, ...]]:
        """Keys of the cells of `suite` whose latest result is ok."""
        cur = self.conn.execute(f"SELECT {', '.join(KEY_FIELDS)} FROM results WHERE suite=? AND status='ok' "
                                f"AND {_LATEST}", (suite,))
        return {tuple(r) for r in cur.fetchall()}

    def active_owners(self, exclude: str | None = None) -> list[str]:
        """Owners of live claims (other runs measuring now), except `exclude`."""
        rows = self.conn.execute("SELECT DISTINCT owner, MAX(heartbeat) FROM results WHERE status='running' "
                                 "GROUP BY owner").fetchall() if "owner" in self._columns else []
        return sorted(o for o, beat in rows if o != exclude and owner_alive(o, beat))

    def suites(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT suite FROM results ORDER BY suite")]

    def runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        """One entry per run id: suite, cells measured, failed, first start and last finish, oldest first."""
        sql = ("SELECT run_id, suite, count(*), sum(status='failed'), min(started), max(finished) FROM results "
               "WHERE run_id IS NOT NULL AND status != 'running'" + (" AND suite=?" if suite else "") +
               " GROUP BY run_id ORDER BY min(id)")
        keys = ("run_id", "suite", "cells", "failed", "started", "finished")
        return [dict(zip(keys, r)) for r in self.conn.execute(sql, (suite,) if suite else ())]

    def rows(self, suite: str | None = None, kind: str | None = None, status: str | None = None,
             run_id: str | None = None, history: bool = False) -> list[dict]:
        """Rows as dicts with JSON columns decoded: the latest finished row per cell, or every row with `history`.

        With `run_id`: the rows that run wrote.
        """
        where, args = [], []
        for col, val in (("suite", suite), ("kind", kind), ("status", status), ("run_id", run_id)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if not history and run_id is None:
            where.append(_LATEST)
        cols = [c for c in COLUMNS if c in self._columns]
        sql = f"SELECT {', '.join(_q(c) for c in cols)} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        out = []
        for r in self.conn.execute(sql + " ORDER BY id", args):
            row = dict.fromkeys(COLUMNS)
            row.update(zip(cols, r))
            if unusable_row(row) is not None:  # a row damaged outside dynconv-bench: report the rest
                if row["id"] not in self.malformed:
                    self.malformed.append(row["id"])
                continue
            out.append(row)
        return out

    def dataframe(self, suite: str | None = None, kind: str | None = None, status: str | None = None,
                  run_id: str | None = None, history: bool = False):  # noqa: ANN201
        """The rows as a pandas DataFrame (JSON columns decoded into dicts)."""
        import pandas as pd

        return pd.DataFrame(self.rows(suite, kind, status, run_id, history), columns=list(COLUMNS))

    def count(self, history: bool = False) -> int:
        """Cells with a finished result, or every row (claims and earlier runs too) with `history`."""
        where = "" if history else f" WHERE {_LATEST}"
        return self.conn.execute(f"SELECT count(*) FROM results{where}").fetchone()[0]


# -- reading rows edited outside dynconv-bench ---------------------------------------------------------
_TEXT_COLUMNS = {"suite": False, "backbone": False, "variant": False, "kind": False, "status": False,
                 "variant_name": True, "config_hash": True, "options_hash": True, "error": True, "run_id": True,
                 "started": True, "finished": True, "owner": True, "heartbeat": True}  # name -> may be NULL
# cell options the reports read, beside each kind's declared options (the per-cell keys a table expands into)
_CELL_OPTIONS: dict[str, Any] = {"mode": str, "batch_size": int, "dataset": str, "seed": int, "device": str,
                                 "precision": str, "threads": int, "channels_last": bool, "compile": bool,
                                 "cuda_graph": bool}


def unusable_row(row: dict[str, Any]) -> str | None:
    """Decode the JSON columns of a stored row in place; why a report cannot use it (None: usable).

    A store edited by hand or by another program may hold anything SQLite takes: text that is no JSON or JSON
    nested past Python's recursion limit, an array where an object belongs, a string or a list where a number
    belongs, a number in a text column. Such a row is left out (by id) instead of failing the whole report.
    """
    if not isinstance(row.get("id"), int) or isinstance(row.get("id"), bool):
        return "id is not an integer"
    for col, nullable in _TEXT_COLUMNS.items():
        if not isinstance(row.get(col), str) and not (nullable and row.get(col) is None):
            return f"{col} is not text"
    for col in JSON_COLUMNS:
        text = row[col]
        try:
            row[col] = json.loads(text) if text else None
        except (ValueError, TypeError, RecursionError):  # JSONDecodeError is a ValueError; bytes that are no UTF-8
            return f"{col} is not JSON"
        if row[col] is not None and not isinstance(row[col], dict):
            return f"{col} is a JSON {type(row[col]).__name__}, not an object"
    if row["status"] != "ok":
        return None  # failed rows show their error only
    try:
        from ..measures import get_kind, records_of

        kind = get_kind(row["kind"])
    except Exception:  # noqa: BLE001 -- an unknown kind has no records: the report shows nothing of it
        return None
    options = row["options"] or {}
    declared = {k: p.type or type(p.default) for k, p in kind.options.params.items() if p.default is not None or p.type}
    for key, value in options.items():
        want = _CELL_OPTIONS.get(key) or declared.get(key)
        if want is not None and value is not None and not _fits_type(value, want):
            return f"options.{key} is {_json_kind(value)}"
    problem = _values_problem(kind.result, row["values"] or {})
    if problem:
        return problem
    try:  # what the leaderboards read of it: every record a finite or NaN float with hashable dimensions
        for rec in records_of(row["kind"], options, row["values"]):
            if not isinstance(rec.value, float) or any(not isinstance(v, (str, int, float, bool, type(None)))
                                                       for _, v in rec.dims):
                return f"a {rec.metric} record is not a number"
            problem = out_of_range(rec.metric, rec.value, rec.ratio)
            if problem:
                return problem
        import pandas as pd

        one = pd.DataFrame([row], columns=list(COLUMNS))
        kind.note(one)  # the kind's own readers: its note under the tables and its section (deploy's matrix)
        kind.section(one)
    except Exception as exc:  # noqa: BLE001 -- a reader that cannot take the row's values
        return f"values cannot be read ({type(exc).__name__})"
    return None


# The values a metric can take (low, high, whether low itself is excluded); every value must be finite. A value
# outside (negative parameters, -5 img/s, a top-1 of 140 %) is no measurement: its row is left out, by id.
VALID_RANGES: dict[str, tuple[float, float, bool]] = {
    "top1": (0.0, 100.0, False), "top5": (0.0, 100.0, False), "chance": (0.0, 100.0, True),
    "paper_top1": (0.0, 100.0, False), "params": (0.0, math.inf, False), "deployed_params": (0.0, math.inf, False),
    "macs": (0.0, math.inf, False), "overhead": (0.0, math.inf, False), "peak_memory": (0.0, math.inf, False),
    "throughput": (0.0, math.inf, True), "latency": (0.0, math.inf, True), "layer_time": (0.0, math.inf, False),
    "layers_forward": (0.0, math.inf, True),
}


def out_of_range(metric: str, value: float, ratio: float | None = None) -> str | None:
    """Why a record's value (and its ratio to the baseline) cannot be a measurement of `metric`, or None."""
    if not math.isfinite(value):
        return f"{metric} is {value!r}, not a finite number"
    low, high, low_open = VALID_RANGES.get(metric, (-math.inf, math.inf, False))
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high == math.inf else ']'}"
        return f"{metric} is {value:g}, outside its valid range {bounds}"
    if ratio is not None and (not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0):
        return f"the ratio of {metric} to the baseline is {ratio!r}, not a positive number"
    return None


def _values_problem(cls: type, values: dict[str, Any]) -> str | None:
    """The first field of the kind's result dataclass whose stored value has the wrong JSON type, as text."""
    import dataclasses
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 -- a third-party result class whose annotations do not resolve
        return None
    for f in dataclasses.fields(cls):
        if f.name == "extra" or f.name not in values:
            continue
        if not _fits_type(values[f.name], hints.get(f.name, Any)):
            return f"values.{f.name} is {_json_kind(values[f.name])}"
    return None


def _fits_type(value: Any, tp: Any) -> bool:
    """Whether a decoded JSON value fits a type annotation (int: not bool, a whole float too, as JSON does not tell
    12 from 12.0; float: any number)."""
    import types
    import typing

    if tp is Any or tp is object:
        return True
    if isinstance(tp, tuple):
        return any(_fits_type(value, t) for t in tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits_type(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    args = typing.get_args(tp)
    if origin is list or tp is list:
        return isinstance(value, list) and (not args or all(_fits_type(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict) and (len(args) < 2 or all(_fits_type(v, args[1]) for v in value.values()))
    return True


def _json_kind(value: Any) -> str:
    name = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{name} ({_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def owner_alive(owner: str | None, heartbeat: str | None, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the run that wrote a claim still runs: its process exists (same host) and its heartbeat is fresh."""
    try:
        age = datetime.now(timezone.utc) - datetime.fromisoformat(heartbeat if isinstance(heartbeat, str) else "")
    except (ValueError, TypeError):  # a heartbeat edited into no time, or a naive one
        return False
    if age > timedelta(seconds=stale_after):
        return False
    host, _, pid = (owner if isinstance(owner, str) else "").rpartition(":")
    if host == platform.node() and pid.isascii() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, OverflowError):  # OverflowError: no pid of this machine is that large
            return False
        except PermissionError:  # exists, another user's
            return True
    return True


def _age_s(stamp: str | None) -> float:
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp if isinstance(stamp, str) else "")
                ).total_seconds()
    except (ValueError, TypeError):
        return float("inf")


class _Transaction:
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
    return str(obj)
