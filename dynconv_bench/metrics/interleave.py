"""Round-robin timing of several models in one process, so drift (load, clocks, heat) hits each alike."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .speed import time_runs


def time_interleaved(steps: dict[str, Callable[[], Any]], device: torch.device, rounds: int, warmup: int,
                     min_time: float, min_runs: int,
                     cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[list[float]]]:
    """Per-run seconds of each step per round: every step is warmed up, then each round times every step
    for `min_time / rounds` seconds (at least `min_runs` runs), in reversed order every other round.

    `cpu_times`, when given, receives each step's process CPU seconds per run, one mean per round.
    """
    names = list(steps)
    for name in names:
        time_runs(steps[name], device, warmup, 0.0, 1)
    out: dict[str, list[list[float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            cpu_start = time.process_time()
            out[name].append(time_runs(steps[name], device, 0, min_time / rounds, min_runs))
            if cpu_times is not None:
                cpu_times.setdefault(name, []).append((time.process_time() - cpu_start) / len(out[name][-1]))
    return out


def round_ratios(own: list[list[float]], baseline: list[list[float]]) -> list[float]:
    """Per round: baseline's median time over this model's (above 1: faster than the baseline)."""
    return [statistics.median(b) / statistics.median(o) for o, b in zip(own, baseline)]


def machine_load() -> dict[str, float | int | None]:
    """1-minute load average, core count and current CPU clock (MHz, mean over cores) where readable."""
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    mhz = None
    try:
        values = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.lower().startswith("cpu mhz")]
        mhz = round(statistics.fmean(values), 1) if values else None
    except (OSError, ValueError, IndexError):
        pass
    return {"load_avg": load, "cores": os.cpu_count(), "cpu_mhz": mhz}
