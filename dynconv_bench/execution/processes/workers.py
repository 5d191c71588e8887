"""Cells in fresh worker processes, as many as their kind asks (`Kind.processes`: a speed cell several, a CPU
memory cell one), the way pyperf runs a benchmark: one process after another, each importing once and building
its models once, the first one's run counts and tuned per-sample conv strategies reused by the others
(calibration: `Kind.calibration`), one value from every process's values with its interval beside it, and a
warning when that interval is wide.

A process carries state from whatever ran in it before (thread pools, allocator arenas, caches); a value
measured in fresh processes does not depend on the cells that came before it in the run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ...measures import Result, get_kind
from ..cell import Cell
from .isolate import run_isolated


def measure_in_workers(cell: Cell, plugins: Sequence[str] = (), processes: int = 3) -> Result:
    """Measure `cell` in `processes` fresh interpreters, one after another; its kind combines their results.

    A failed process fails the cell (its error names the process, when there are several)."""
    kind = get_kind(cell.kind)
    results: list[Result] = []
    calibration: dict[str, Any] | None = None
    cuda = str(cell.options.get("device", "cpu")).startswith("cuda")
    extra_env = kind.worker_environment(cell.opts)
    for i in range(processes):
        out = run_isolated(_worker, cell.to_dict(), list(plugins), calibration, cuda=cuda, extra_env=extra_env)
        result = kind.result.from_values(out)
        if result.status != "ok":
            if processes > 1:
                result.error = f"worker process {i + 1} of {processes}: {result.error}"
            return result
        results.append(result)
        if i == 0:
            calibration = kind.calibration(result)
    combined = kind.combine(results)
    warning = getattr(combined, "spread_warning", None)
    if warning:
        sys.stderr.write(f"dynconv-bench: warning: {cell.label()}: {warning}\n")
    return combined


def _worker(cell: dict[str, Any], plugins: list[str], calibration: dict[str, Any] | None) -> dict[str, Any]:
    """In a fresh interpreter: fix the thread count first, then build and measure one process's share."""
    import torch

    c = Cell.from_dict(cell)
    opts = c.opts
    if getattr(opts, "threads", None):
        torch.set_num_threads(int(opts.threads))
    if calibration:
        opts = type(opts)({**opts.as_dict(), "calibration": calibration})
    spec = c.model_spec(plugins)
    spec.load_plugins()
    return get_kind(c.kind).measure(spec, opts).to_values()

