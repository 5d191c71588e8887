"""Reading the results store: the latest finished row per cell or the whole history, runs, and who holds which
claim (alive or not); rows edited outside dynconv-bench into something a report cannot use are left out by id."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .cell import KEY_FIELDS
from .store_schema import COLUMNS, JSON_COLUMNS, quoted


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

KEY_SQL = " AND ".join(f"{f}=?" for f in KEY_FIELDS)  # one cell, its key's values as parameters
_LATEST = (f"id IN (SELECT MAX(id) FROM results WHERE status IN ('ok', 'failed') GROUP BY {', '.join(KEY_FIELDS)})")


class StoreReads:
    """The queries of a ResultStore (store.py opens the connection; store_write.StoreWrites builds on these)."""

    path: Path
    conn: sqlite3.Connection
    malformed: list[int]  # ids of the rows read so far that a report cannot use (rows() leaves them out)
    _columns: list[str]  # the results table's columns (a store of schema 1 lacks owner and heartbeat)

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
        sql = f"SELECT {', '.join(quoted(c) for c in cols)} FROM results"
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

    # -- claims: who measures which cell now, alive or not -----------------------------------------------
    def holder(self, cell: Any) -> dict[str, Any] | None:
        """The open claim on `cell` (owner, heartbeat age in s, alive), or None."""
        row = self.conn.execute(f"SELECT owner, heartbeat FROM results WHERE {KEY_SQL} AND status='running' "
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
