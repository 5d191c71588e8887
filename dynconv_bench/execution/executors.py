"""Executors run cells: `local` (in process, or one subprocess per cell) and `ray` (cells as Ray tasks, placed)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from ..errors import UserError, unknown_choice
from ..metrics.isolate import run_isolated
from ..metrics.limits import MemoryCap, MemoryCapExceeded, MemoryGuard
from .store import utcnow
from .suite import Cell

EXECUTORS = ("local", "ray")
CellFn = Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]
OnStart = Callable[[Cell], "bool | None"]  # called before a cell runs; False skips it (claimed elsewhere)


def _default_fn(cell: dict[str, Any], plugins: Sequence[str] = ()) -> dict[str, Any]:
    from .cells import run_cell

    return run_cell(cell, plugins)


def _failed(error: str, started: str) -> dict[str, Any]:
    return {"values": None, "status": "failed", "error": error, "environment": None, "started": started,
            "finished": utcnow()}


def _cuda(cell: Cell) -> bool:
    return str(cell.options.get("device", "cpu")).startswith("cuda")


def run_guarded(fn: CellFn, cell: dict[str, Any], plugins: Sequence[str] = (), memory_cap: MemoryCap = None,
                cuda: bool = False) -> dict[str, Any]:
    """`fn(cell, plugins)` in this process under a memory cap; going over it makes the cell failed."""
    started = utcnow()
    result: dict[str, Any] = {}
    with MemoryGuard(memory_cap, cuda=cuda) as guard:
        try:
            result = fn(cell, plugins)
        except (MemoryError, RuntimeError) as exc:  # an allocation past the cap, refused by the data limit
            if isinstance(exc, MemoryCapExceeded) or not guard.refused(exc):
                raise
            return _failed(str(guard.refused(exc)), started)
    if guard.error:
        return _failed(guard.error, started)
    refused = guard.refused(str(result.get("error") or "")) if result.get("status") == "failed" else None
    return {**result, "error": refused} if refused else result  # run_cell caught the refusal


def run_in_subprocess(cell: Cell, plugins: Sequence[str] = (), timeout: float | None = None,
                      memory_cap: MemoryCap = None, fn: CellFn | None = None) -> dict[str, Any]:
    """Measure `cell` in a fresh Python process (dies with this one); a crash, timeout or the cap: a failed result."""
    started = utcnow()
    out = run_isolated(fn or _default_fn, cell.to_dict(), list(plugins), timeout=timeout, memory_cap=memory_cap,
                       cuda=_cuda(cell))
    return out if "values" in out else _failed(str(out.get("error")), started)


class LocalExecutor:
    """Cells one after another on this machine, in this process or each in its own subprocess."""

    name = "local"

    def __init__(self, subprocess: bool = False, timeout: float | None = None, fn: CellFn | None = None) -> None:
        self.subprocess = subprocess
        self.timeout = timeout
        self.fn = fn or _default_fn

    def map(self, cells: Iterable[Cell], plugins: Sequence[str] = (), on_start: OnStart | None = None,
            memory_cap: MemoryCap = None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Yield (cell, result) in order; a cell whose `on_start` returns False is skipped."""
        for cell in cells:
            if on_start is not None and on_start(cell) is False:
                continue
            if self.subprocess:
                yield cell, run_in_subprocess(cell, plugins, self.timeout, memory_cap, self.fn)
            else:
                yield cell, run_guarded(self.fn, cell.to_dict(), plugins, memory_cap, _cuda(cell))


class RayExecutor:
    """Cells as Ray tasks; timed cells hold a node (CPU) or a GPU and its CPU share, untimed ones pack.

    See dynconv_bench.execution.placement for what each cell asks for and where it goes. A task that dies
    with its node becomes a failed cell (a rerun measures it again); results come back as tasks finish.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 max_pending: int | None = None, fn: CellFn | None = None, poll_s: float = 2.0) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_pending = max_pending
        self.fn = fn or _default_fn
        self.poll_s = poll_s  # how often the live nodes are read again while waiting

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'dynconv-bench[ray]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         ignore_reinit_error=True)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {self.address!r}: {exc}") from None
        return ray

    def map(self, cells: Iterable[Cell], plugins: Sequence[str] = (), on_start: OnStart | None = None,
            memory_cap: MemoryCap = None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Yield (cell, result) as tasks finish; a cell whose `on_start` returns False is not submitted."""
        from .placement import Ledger, cell_demand

        ray = self._connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ledger = Ledger(ray.nodes())
        task = ray.remote(max_retries=0)(run_placed)
        queue = list(cells)
        pending: dict[Any, tuple[Cell, Any]] = {}
        while queue or pending:
            for cell in list(queue):
                if self.max_pending and len(pending) >= self.max_pending:
                    break
                demand = cell_demand(cell, self.num_cpus, self.num_gpus)
                why = ledger.impossible(demand)
                if why is not None:
                    queue.remove(cell)
                    if on_start is None or on_start(cell) is not False:
                        yield cell, _failed(why, utcnow())
                    continue
                placement = ledger.place(demand)
                if placement is None:
                    continue
                queue.remove(cell)
                if on_start is not None and on_start(cell) is False:
                    ledger.release(placement)
                    continue
                options: dict[str, Any] = {"num_cpus": placement.cpus, "num_gpus": placement.gpus}
                if placement.node_id is not None:
                    options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placement.node_id, soft=False)
                threads = max(1, int(placement.cpus)) if placement.node_id is not None else None
                ref = task.options(**options).remote(self.fn, cell.to_dict(), list(plugins), memory_cap,
                                                     _cuda(cell), threads, placement.node_cpus)
                pending[ref] = (cell, placement)
            if not pending:
                if queue:  # every node that could hold them is gone or busy elsewhere: read the nodes again
                    time.sleep(min(self.poll_s, 0.5))
                    ledger.update(ray.nodes())
                continue
            done, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
            if not done:
                ledger.update(ray.nodes())
                continue
            for ref in done:
                cell, placement = pending.pop(ref)
                ledger.release(placement)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker or its node died: failed, and a rerun measures it again
                    if isinstance(exc, (ray.exceptions.NodeDiedError, ray.exceptions.TaskUnschedulableError)):
                        ledger.forget(placement.node_id or "")
                    ledger.update(ray.nodes())
                    node = placement.node_id or "?"
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    result = {**_failed(f"ray task failed on node {node[:12]}: {type(exc).__name__}: {first}",
                                        utcnow()), "environment": {"executor": "ray", "node_id": placement.node_id}}
                yield cell, result


def run_placed(fn: CellFn, cell: dict[str, Any], plugins: Sequence[str] = (), memory_cap: MemoryCap = None,
               cuda: bool = False, threads: int | None = None, node_cpus: float = 0.0) -> dict[str, Any]:
    """A Ray task: `run_guarded` with `threads` torch threads; the row names its node, its span to the ms."""
    from ..metrics.env import ray_placement
    from ..training.distributed import EXECUTOR_ENV

    started = utcnow_ms()
    os.environ[EXECUTOR_ENV] = "ray"  # a DDP cell here launches its workers through Ray Train
    with task_threads(threads):
        result = run_guarded(fn, cell, plugins, memory_cap, cuda)
    env = {**(result.get("environment") or {}), **ray_placement(task_cpus=threads)}
    node_cpus = node_cpus or env.get("node_cpus") or 0
    if node_cpus:  # every row of a node names the same default: what a cell holding the whole node runs with
        env["threads"] = max(1, int(node_cpus))
    return {**result, "environment": env, "started": started, "finished": utcnow_ms()}


@contextlib.contextmanager
def task_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads, and OMP/MKL's for subprocesses, set to `threads` for the block (None: as is)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    env_before = {k: os.environ.get(k) for k in _THREAD_VARS}
    torch.set_num_threads(threads)
    os.environ.update({k: str(threads) for k in _THREAD_VARS})
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def utcnow_ms() -> str:
    """UTC now in ISO format to the millisecond: a Ray row's span, precise enough to check that spans overlap."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def make_executor(name: str = "local", **kw: Any) -> LocalExecutor | RayExecutor:
    """An executor by name: `local` (subprocess, timeout) or `ray` (address, num_cpus, num_gpus)."""
    if name == "local":
        return LocalExecutor(**{k: v for k, v in kw.items() if k in ("subprocess", "timeout", "fn")})
    if name == "ray":
        return RayExecutor(**{k: v for k, v in kw.items() if k in ("address", "num_cpus", "num_gpus", "max_pending",
                                                                    "fn", "poll_s")})
    raise unknown_choice("executor", name, EXECUTORS)
