"""The results store: SQLite, every run of every cell kept (history), each write one transaction (WAL journal).

A run claims a cell before measuring it: a `running` row naming its owner (host:pid) with a heartbeat.
Concurrent runs skip cells another live run holds or finished after they started; a dead owner's claim is
taken over (a result of a claim taken over is discarded, never a second row). Reads give the latest finished
row per cell. Only empty SQLite files and stores are written to. ResultStore is built from three modules, whose
imports run one way: store_write.py (claims and writes) -> store_read.py (reads) -> store_schema.py (opening,
schema and migrations, which files may be written).
"""

from __future__ import annotations

from pathlib import Path

from .store_read import StoreReads
from .store_schema import open_store
from .store_write import StoreWrites


class ResultStore(StoreWrites, StoreReads):
    """SQLite results store. Every write is one transaction: a kill loses at most the cell in flight."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.malformed: list[int] = []
        self.conn, self._columns, self.schema_version = open_store(self.path, readonly)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()
