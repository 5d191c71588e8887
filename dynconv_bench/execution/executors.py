"""Executors run cells: `local` (in process, or one subprocess per cell) and `ray` (cells as Ray tasks)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..errors import UserError, unknown_choice
from .isolate import run_isolated
from .limits import MemoryCap, MemoryCapExceeded, MemoryGuard
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
    """Cells as Ray tasks with CPU/GPU requests; results come back to this process as tasks finish."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 max_pending: int | None = None, fn: CellFn | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_pending = max_pending
        self.fn = fn or _default_fn

    def _resources(self, cell: Cell) -> dict[str, float]:
        gpus = cell.options.get("num_gpus")
        if gpus is None:
            gpus = max(self.num_gpus, 1) if cell.options.get("device") == "cuda" else self.num_gpus
        return {"num_cpus": self.num_cpus, "num_gpus": gpus}

    def map(self, cells: Iterable[Cell], plugins: Sequence[str] = (), on_start: OnStart | None = None,
            memory_cap: MemoryCap = None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Yield (cell, result) as tasks finish; a cell whose `on_start` returns False is not submitted."""
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
        task = ray.remote(run_guarded)
        pending: dict[Any, Cell] = {}
        queue = list(cells)
        limit = self.max_pending or max(1, int(ray.cluster_resources().get("CPU", 1) * 2))
        while queue or pending:
            while queue and len(pending) < limit:
                cell = queue.pop(0)
                if on_start is not None and on_start(cell) is False:
                    continue
                ref = task.options(**self._resources(cell)).remote(self.fn, cell.to_dict(), list(plugins),
                                                                   memory_cap, _cuda(cell))
                pending[ref] = cell
            if not pending:
                continue
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    yield cell, ray.get(ref)
                except Exception as exc:  # a task that died (worker crash, OOM kill)
                    yield cell, _failed(f"ray task failed: {type(exc).__name__}: {exc}", utcnow())


def make_executor(name: str = "local", **kw: Any) -> LocalExecutor | RayExecutor:
    """An executor by name: `local` (subprocess, timeout) or `ray` (address, num_cpus, num_gpus)."""
    if name == "local":
        return LocalExecutor(**{k: v for k, v in kw.items() if k in ("subprocess", "timeout", "fn")})
    if name == "ray":
        return RayExecutor(**{k: v for k, v in kw.items() if k in ("address", "num_cpus", "num_gpus", "max_pending",
                                                                    "fn")})
    raise unknown_choice("executor", name, EXECUTORS)
