"""The runner: expand a suite into cells, skip those already done, run the rest, store every result."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executors import LocalExecutor, RayExecutor
from .store import ResultStore
from .suite import Cell, Suite, load_suite


@dataclass
class RunSummary:
    """What a run did: how many cells ran, were skipped, and which failed (with their errors)."""

    suite: str
    run_id: str
    total: int = 0
    skipped: int = 0
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell label, error)

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        text = (f"suite {self.suite}: {self.total} cells, {self.ran} run, {self.skipped} already done, "
                f"{len(self.failed)} failed")
        return text + "".join(f"\n  FAILED {label}: {err}" for label, err in self.failed)


def select_cells(cells: list[Cell], only: Sequence[str] = ()) -> list[Cell]:
    """Keep cells whose kind, backbone or variant is in `only` (all when empty)."""
    if not only:
        return cells
    return [c for c in cells if {c.kind, c.backbone, c.variant} & set(only)]


def pending_cells(suite: Suite, store: ResultStore, force: bool = False, only: Sequence[str] = ()) -> tuple[
        list[Cell], int]:
    """The cells still to run and the number skipped because they finished ok before."""
    cells = select_cells(suite.cells(), only)
    if force:
        return cells, 0
    done = store.done_keys(suite.name)
    todo = [c for c in cells if c.key not in done]
    return todo, len(cells) - len(todo)


def run_suite(suite: Suite | str | Path, store: ResultStore | str | Path, force: bool = False,
              executor: LocalExecutor | RayExecutor | None = None, plugins: Sequence[str] = (),
              only: Sequence[str] = (), progress: bool = True, stream: Any = None) -> RunSummary:
    """Run every pending cell of `suite`, writing each result to `store` as soon as it is known."""
    from tqdm import tqdm

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    own_store = not isinstance(store, ResultStore)
    db = ResultStore(store) if own_store else store
    executor = executor or LocalExecutor()
    summary = RunSummary(suite.name, uuid.uuid4().hex[:12])
    try:
        todo, summary.skipped = pending_cells(suite, db, force, only)
        summary.total = len(todo) + summary.skipped
        bar = tqdm(total=len(todo), desc=suite.name, unit="cell", disable=not progress, file=stream or sys.stderr,
                   dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")

        def on_start(cell: Cell) -> None:
            bar.set_postfix_str(cell.label(), refresh=True)

        for cell, result in executor.map(todo, plugins, on_start=on_start):
            db.put(cell, result.get("values"), result["status"], result.get("error"), result.get("environment"),
                   result.get("started"), result.get("finished"), run_id=summary.run_id)
            summary.ran += 1
            if result["status"] != "ok":
                summary.failed.append((cell.label(), str(result.get("error"))))
                bar.write(f"FAILED {cell.label()}: {result.get('error')}")
            bar.update(1)
        bar.set_postfix_str("done")
        bar.close()
    finally:
        if own_store:
            db.close()
    return summary
