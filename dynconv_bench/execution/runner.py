"""The runner: expand a suite into cells, skip those already done, claim and run the rest, store every result."""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models.per_sample_conv import CACHE_ENV
from ..models.registry import variant_source
from .cell import Cell, with_defaults
from .executors import LocalExecutor
from .executors_ray import RayExecutor
from .processes.limits import MemoryCap, default_memory_cap, parse_memory_cap
from .store import ResultStore
from .store_read import HEARTBEAT_EVERY_S, STALE_AFTER_S
from .store_schema import sqlite_error_line
from .store_write import this_owner
from .suite import load_suite
from .suite_cells import Suite


@dataclass
class RunSummary:
    """What a run did: how many cells ran, were skipped, and which failed (with their errors)."""

    suite: str
    run_id: str
    total: int = 0
    skipped: int = 0
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell label, error)
    left: list[Handoff] = field(default_factory=list)  # cells another run was measuring (or finished)
    discarded: list[str] = field(default_factory=list)  # cells measured here after another run took them over

    @property
    def elsewhere(self) -> int:
        return len(self.left)

    @property
    def ok(self) -> bool:
        return not self.failed

    def headline(self) -> str:
        text = (f"suite {self.suite}: {self.total} cells, {self.ran} run, {self.skipped} already done, "
                f"{len(self.failed)} failed")
        if self.left:
            text += f", {len(self.left)} left to another run"
        if self.discarded:
            text += f", {len(self.discarded)} discarded (taken over while this run was stopped)"
        return text

    def handoff_lines(self) -> list[str]:
        """One line per cell this run left to another one, saying whether that run is still alive."""
        lines = [f"  left {h.label} to {h.describe()}" for h in self.left]
        lines += [f"  discarded this run's result of {label}: another run took the cell over while this run was "
                  "stopped (its heartbeat went stale); that run's result is kept" for label in self.discarded]
        return lines

    def describe(self) -> str:
        return "\n".join([self.headline(), *self.handoff_lines(),
                          *(f"  FAILED {label}: {err}" for label, err in self.failed)])


@dataclass
class Handoff:
    """A cell left to another run: who holds it, and (at the end of this run) whether it is done or still alive."""

    label: str
    owner: str | None = None  # None: another run had finished it when this one reached it
    state: str = "finished"

    def describe(self) -> str:
        return f"{'another run' if self.owner is None else f'run {self.owner}'}: {self.state}"


def select_cells(cells: list[Cell], only: Sequence[str] = ()) -> list[Cell]:
    """Keep the cells `only` selects (all when empty); UserError for a name no cell has.

    Each value names a kind, backbone or variant; repeated values add up (a union: `--only speed --only resnet18`
    is every speed cell and every resnet18 cell). Names joined by `+` must all match (an intersection:
    `--only speed+resnet18` is resnet18's speed cells). A name that itself contains `+` is taken whole.
    """
    if not only:
        return cells
    names = {n for c in cells for n in (c.kind, c.backbone, c.variant)}
    terms = [[term] if term in names else term.split("+") for term in only]
    for name in (n for term in terms for n in term):
        if name not in names:
            raise UserError(f"--only {name!r} names no cell of this suite; valid: kinds "
                            f"{', '.join(sorted({c.kind for c in cells}))}; backbones "
                            f"{', '.join(sorted({c.backbone for c in cells}))}; variants "
                            f"{', '.join(sorted({c.variant for c in cells}))}")
    return [c for c in cells if any(set(term) <= {c.kind, c.backbone, c.variant} for term in terms)]


def pending_cells(suite: Suite, store: ResultStore | None, force: bool = False, only: Sequence[str] = ()) -> tuple[
        list[Cell], int]:
    """The cells still to run and the number skipped because they finished ok before (no store: none did)."""
    cells = select_cells(suite.cells(), only)
    if force or store is None:
        return cells, 0
    done = store.done_keys(suite.name)
    todo = [c for c in cells if c.key not in done]
    return todo, len(cells) - len(todo)


def resolve_memory_cap(suite: Suite, memory_cap: Any = None) -> MemoryCap:
    """The cap of this run's cells: the argument, else the suite's `memory_cap`, else `default_memory_cap()`."""
    for value in (memory_cap, suite.memory_cap):
        if value is not None:
            return parse_memory_cap(value)
    return default_memory_cap()


def strategy_cache_path(store_path: str | Path) -> Path:
    """Where a run keeps the tuned per-sample conv strategies of its store: beside it, `<store>.strategies.json`."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".strategies.json")


def run_suite(suite: Suite | str | Path, store: ResultStore | str | Path, force: bool = False,
              executor: LocalExecutor | RayExecutor | None = None, plugins: Sequence[str] = (),
              only: Sequence[str] = (), progress: bool = True, stream: Any = None,
              memory_cap: Any = None) -> RunSummary:
    """Run every pending cell of `suite`, writing each result to `store` as soon as it is known.

    Each cell is claimed in the store first, so runs sharing a store split the work; `memory_cap` (bytes,
    a fraction of the machine's memory, or "none") overrides the suite's cap per cell.
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    cap = resolve_memory_cap(suite, memory_cap)
    own_store = not isinstance(store, ResultStore)
    db = ResultStore(store) if own_store else store
    executor = executor or LocalExecutor()
    summary = RunSummary(suite.name, uuid.uuid4().hex[:12])
    owner = this_owner()
    claims: dict[tuple, int] = {}
    concurrent: dict[tuple, set[str]] = {}
    handed: dict[str, Cell] = {}
    beat = _Heartbeat(db.path, owner)
    cache_env = os.environ.get(CACHE_ENV)
    if cache_env is None:  # tuned per-sample conv strategies persist next to the store (workers inherit it)
        os.environ[CACHE_ENV] = str(strategy_cache_path(db.path))
    try:
        after_id, running = db.open_claims()  # a result newer than this start: another run measured the cell
        todo, summary.skipped = pending_cells(suite, db, force, only)
        summary.total = len(todo) + summary.skipped
        bar = Progress(todo, suite.name, progress, stream or sys.stderr)

        def on_start(cell: Cell) -> bool:
            claim = db.claim(cell, summary.run_id, owner, after_id=after_id, running=running)
            if claim is None:
                holder = db.holder(cell)
                summary.left.append(Handoff(cell.label(), holder["owner"] if holder else None))
                handed[cell.label()] = cell
                bar.skip(cell)
                return False
            claims[cell.key] = claim
            concurrent[cell.key] = set(db.active_owners(exclude=owner))
            bar.start(cell)
            return True

        beat.start()
        for cell, result in executor.map(todo, plugins, on_start=on_start, memory_cap=cap):
            env = dict(result.get("environment") or {})
            others = concurrent.pop(cell.key, set()) | set(db.active_owners(exclude=owner))
            if others:  # say so: this cell was measured while another run was measuring too
                env["concurrent_runs"] = sorted(others)
            env["variant_source"] = cell.source or variant_source(cell.variant_name)
            env["variant_config"] = with_defaults(cell.variant_name, cell.config)  # reports name what changed
            kept = db.finish(claims[cell.key], cell, result.get("values"), result["status"], result.get("error"), env,
                             result.get("started"), result.get("finished"), run_id=summary.run_id, owner=owner)
            claims.pop(cell.key)  # only once its result is stored: a failed write leaves the claim to release
            if kept is None:
                summary.discarded.append(cell.label())
                bar.done(cell, result)
                continue
            summary.ran += 1
            if result["status"] != "ok":
                summary.failed.append((cell.label(), str(result.get("error"))))
            bar.done(cell, result)
        bar.close()
        for handoff in summary.left:
            handoff.state = _handoff_state(db, handed[handoff.label], handoff.owner)
    except sqlite3.Error as exc:  # a full disk, an I/O error: one line; the results stored so far are kept
        raise UserError(sqlite_error_line(exc, db.path)) from None
    finally:
        beat.stop()
        try:
            db.release(list(claims.values()), owner)  # an interrupted run leaves no claim behind
        except sqlite3.Error as exc:  # the claims stay; another run takes them over once this process is gone
            sys.stderr.write(f"dynconv-bench: warning: {len(claims)} claim(s) not released "
                             f"({sqlite_error_line(exc, db.path)}); a later run takes them over\n")
        if cache_env is None:
            os.environ.pop(CACHE_ENV, None)
        if own_store:
            db.close()
    return summary


def _handoff_state(db: ResultStore, cell: Cell, owner: str | None) -> str:
    """What became of a cell left to another run, read at the end of this one."""
    if owner is None:
        return "finished"
    holder = db.holder(cell)
    if holder is None:
        return "finished" if db.newer_result(cell, 0) else "released without a result (rerun to measure it)"
    age = f"last heartbeat {holder['age_s']:.0f} s ago"
    if holder["alive"]:
        return f"still measuring it ({age})"
    return f"stalled or dead ({age}, stale after {STALE_AFTER_S:.0f} s): a rerun takes the cell over"


class _Heartbeat:
    """A thread that refreshes this run's claims (with its own connection: sqlite3 objects stay in one thread)."""

    def __init__(self, path: Path, owner: str, every: float = HEARTBEAT_EVERY_S) -> None:
        self.path, self.owner, self.every = path, owner, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dynconv-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        db = None
        while not self._stop.wait(self.every if db is not None else 0):
            try:  # a busy store (locked past its timeout) must not end the thread: its claims would look dead
                db = db or ResultStore(self.path)
                db.heartbeat(self.owner)
            except (sqlite3.Error, UserError, OSError) as exc:
                sys.stderr.write(f"dynconv-bench: warning: heartbeat not written ({exc}); retrying\n")
                if self._stop.wait(min(self.every, 1.0)):
                    break
        if db is not None:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class Progress:
    """Per-cell progress with ETA: a bar on a terminal, one plain line per cell otherwise (logs, CI).

    The ETA sums, over the kinds of the cells still to run, their count times the mean duration of the
    finished cells of that kind (of all finished cells while none of the kind has finished), so that a
    run of quick params cells followed by slow accuracy cells is not promised to end in seconds.
    """

    def __init__(self, cells: Sequence[Cell], desc: str, enabled: bool, stream: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.enabled, self.stream, self.clock = desc, enabled, stream, clock
        self.left: Counter[str] = Counter(c.kind for c in cells)
        self.took: dict[str, list[float]] = {}
        self.total, self.n = len(cells), 0
        self.started: dict[tuple, float] = {}
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("CI")
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit="cell", file=stream, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def eta(self) -> float | None:
        """Seconds the cells still to run should take; None before any cell has finished."""
        every = [t for times in self.took.values() for t in times]
        if not every:
            return None if sum(self.left.values()) else 0.0
        overall = statistics.fmean(every)
        return sum(n * (statistics.fmean(self.took[k]) if self.took.get(k) else overall)
                   for k, n in self.left.items())

    def _eta_text(self) -> str:
        eta = self.eta()
        return "ETA ?" if eta is None else f"ETA {_duration(eta)}"

    def start(self, cell: Cell) -> None:
        self.started[cell.key] = self.clock()
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._eta_text()}; {cell.label()}", refresh=True)

    def skip(self, cell: Cell) -> None:
        self.total -= 1
        self.left[cell.kind] -= 1
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def done(self, cell: Cell, result: dict[str, Any]) -> None:
        self.n += 1
        now = self.clock()
        took = now - self.started.pop(cell.key, now)
        self.left[cell.kind] -= 1
        self.took.setdefault(cell.kind, []).append(took)
        failed = result["status"] != "ok"
        if self.bar is not None:
            if failed:
                self.bar.write(f"FAILED {cell.label()}: {result.get('error')}")
            self.bar.set_postfix_str(self._eta_text(), refresh=False)
            self.bar.update(1)
        elif self.enabled:
            status = f"FAILED: {result.get('error')}" if failed else "ok"
            self.stream.write(f"[{self.n}/{self.total}] {cell.label()} {status} ({took:.1f} s; {self._eta_text()})\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str("done")
            self.bar.close()


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
