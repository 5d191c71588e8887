"""Executors run cells: `local` here (in process, or one subprocess per cell), `ray` in executors_ray.py (cells as
Ray tasks, placed), and the registry that finds them by name.

Executors are plugins: an entry point in the group `dynconv_bench.executors` names a factory (a class or a
function) by the executor's name; `make_executor` calls it with the keyword options it accepts, of `subprocess`,
`timeout` (per cell), `fn`, `address`, `num_cpus`, `num_gpus`, `max_pending`, `poll_s`, `ray_timeout` and
`exit_on_timeout` (all of them if it takes **kwargs). What it returns has `map(cells, plugins, on_start=None,
memory_cap=None)`, yielding (cell, result) as `LocalExecutor.map` does, and may have `connect()` (called before
the store is opened). The built-ins are registered the same way, in this project's pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..discovery import EXECUTOR_GROUP, entry_point_names, load_group
from ..errors import unknown_choice
from .cell import Cell
from .processes.isolate import run_isolated
from .processes.limits import MemoryCap, MemoryCapExceeded, MemoryGuard
from .store_write import utcnow

CellFn = Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]
OnStart = Callable[[Cell], "bool | None"]  # called before a cell runs; False skips it (claimed elsewhere)


def default_fn(cell: dict[str, Any], plugins: Sequence[str] = ()) -> dict[str, Any]:
    """What an executor runs for a cell unless given `fn`: `run_cell` (a module-level function, so a fresh
    process or a Ray task can import it by name)."""
    from .measure_cell import run_cell

    return run_cell(cell, plugins)


def failed_result(error: str, started: str) -> dict[str, Any]:
    """A cell's result that failed before it could measure (a crash, the cap, a lost node): `error` says why."""
    return {"values": None, "status": "failed", "error": error, "environment": None, "started": started,
            "finished": utcnow()}


def is_cuda(cell: Cell) -> bool:
    """Whether `cell` measures on a CUDA device."""
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
            return failed_result(str(guard.refused(exc)), started)
    if guard.error:
        return failed_result(guard.error, started)
    refused = guard.refused(str(result.get("error") or "")) if result.get("status") == "failed" else None
    return {**result, "error": refused} if refused else result  # run_cell caught the refusal


def run_in_subprocess(cell: Cell, plugins: Sequence[str] = (), timeout: float | None = None,
                      memory_cap: MemoryCap = None, fn: CellFn | None = None) -> dict[str, Any]:
    """Measure `cell` in a fresh Python process (dies with this one); a crash, timeout or the cap: a failed result."""
    started = utcnow()
    out = run_isolated(fn or default_fn, cell.to_dict(), list(plugins), timeout=timeout, memory_cap=memory_cap,
                       cuda=is_cuda(cell))
    return out if "values" in out else failed_result(str(out.get("error")), started)


class LocalExecutor:
    """Cells one after another on this machine, in this process or each in its own subprocess."""

    name = "local"

    def __init__(self, subprocess: bool = False, timeout: float | None = None, fn: CellFn | None = None) -> None:
        self.subprocess = subprocess
        self.timeout = timeout
        self.fn = fn or default_fn

    def map(self, cells: Iterable[Cell], plugins: Sequence[str] = (), on_start: OnStart | None = None,
            memory_cap: MemoryCap = None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Yield (cell, result) in order; a cell whose `on_start` returns False is skipped."""
        for cell in cells:
            if on_start is not None and on_start(cell) is False:
                continue
            if self.subprocess:
                yield cell, run_in_subprocess(cell, plugins, self.timeout, memory_cap, self.fn)
            else:
                yield cell, run_guarded(self.fn, cell.to_dict(), plugins, memory_cap, is_cuda(cell))


_EXECUTORS: dict[str, Callable[..., Any]] = {}
_executors_loaded = False


def register_executor(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
    """Make an executor known to `make_executor` from code (an installed one: by entry point)."""
    _EXECUTORS[name] = factory
    return factory


def _load_executors() -> dict[str, Callable[..., Any]]:
    global _executors_loaded
    if not _executors_loaded:
        _executors_loaded = True
        load_group(EXECUTOR_GROUP, "executor", lambda ep: register_executor(ep.name, ep.load()))
    return _EXECUTORS


def list_executors() -> list[str]:
    """The executors' names: the installed entry points' (none imported), then any registered from code."""
    return list(dict.fromkeys([*entry_point_names(EXECUTOR_GROUP), *_EXECUTORS]))


def make_executor(name: str = "local", **kw: Any) -> Any:
    """An executor by name, its factory called with the options of `kw` it accepts (module docstring)."""
    import inspect

    factories = _load_executors()
    if name not in factories:
        raise unknown_choice("executor", name, list(factories))
    factory = factories[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    return factory(**kw)
