"""Claiming and writing the results store: claims with heartbeats, a dead run's claims closed as abandoned and
taken over, results recorded (a claim turned into its cell's row) or released; each write one transaction."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

from ..errors import UserError
from .store_read import KEY_SQL, StoreReads, owner_alive
from .store_schema import COLUMNS, Transaction, quoted

ABANDONED = "abandoned: "  # error text prefix of a claim closed because its run died

STATUSES = ("ok", "failed", "running")


def utcnow() -> str:
    """The store's time stamp: UTC to the second, ISO 8601 (started, finished, heartbeat)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_owner() -> str:
    """host:pid of this process, as written in the claims it makes."""
    return f"{platform.node()}:{os.getpid()}"


class StoreWrites(StoreReads):
    """The writes of a ResultStore: each one transaction, refused on a store opened read-only."""

    readonly: bool

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
        cur = self.conn.execute(f"INSERT INTO results ({', '.join(quoted(c) for c in COLUMNS[1:])}) "
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
                    f"SELECT id, owner, heartbeat FROM results WHERE {KEY_SQL} AND status='running'",
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
            f"SELECT 1 FROM results WHERE {KEY_SQL} AND status IN ('ok', 'failed') AND {newer} "
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

    def _transaction(self) -> Transaction:
        if self.readonly:
            raise UserError(f"results store {self.path} was opened read-only")
        return Transaction(self.conn)


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
