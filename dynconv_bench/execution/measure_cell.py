"""Measure one cell (execution/cell.py says what a cell is) with its kind; never raises (failures become results)."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from ..measures import get_kind
from .cell import Cell
from .store_write import utcnow


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """The environment of this process (cached: collected once per worker)."""
    try:
        from ..metrics.env import collect_environment

        return collect_environment()
    except Exception as exc:  # the store still gets the basics
        import platform

        return {"host": platform.node(), "torch": torch.__version__, "error": f"{type(exc).__name__}: {exc}"}


def run_cell(cell: Cell | dict[str, Any], plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Measure one cell: {values, status, error, environment, started, finished}; never raises."""
    started = utcnow()
    values: dict[str, Any] | None = None
    try:
        cell = cell if isinstance(cell, Cell) else Cell.from_dict(cell)
        spec = cell.model_spec(plugins)
        spec.load_plugins()
        o = cell.opts
        threads = torch.get_num_threads()
        try:
            if getattr(o, "threads", None):  # a fixed, recorded thread count for this cell only
                torch.set_num_threads(int(o.threads))
            kind = get_kind(cell.kind)
            before = _load() if kind.timed else None
            processes = kind.processes(o)
            workers, nodes = kind.ddp_workers(o)
            if workers > 1:  # DDP worker processes, torchrun or Ray Train (see execution/processes/ddp_launch.py)
                from .processes.ddp_launch import measure_ddp

                result = measure_ddp(cell, spec, workers, nodes)
            elif processes:  # in fresh worker processes (see execution/processes/workers.py)
                from .processes.workers import measure_in_workers

                result = measure_in_workers(cell, plugins, processes)
            else:
                result = kind.measure(spec, o)
        finally:
            torch.set_num_threads(threads)
        values = result.to_values()
        if before is not None:  # a timed kind: the machine's load around it (the report marks a loaded cell `!`)
            after = _load()
            loads = [x["load_avg"] for x in (before, after) if x["load_avg"] is not None]
            values.setdefault("load_avg", max(loads) if loads else None)
            values.setdefault("cores", after["cores"])
        status = "ok" if result.status in ("ok", None) else "failed"
        error = result.error if status == "failed" else None
        if status == "failed" and not error:
            error = f"{cell.kind} measurement reported status {result.status!r}"
    except Exception as exc:
        status, error = "failed", _error_text(exc)
    return {"values": values, "status": status, "error": error, "environment": environment(),
            "started": started, "finished": utcnow()}


def _load() -> dict[str, Any]:
    from ..metrics.timing import machine_load

    return machine_load()


def _error_text(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
