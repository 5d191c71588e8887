"""Round-robin timing of several models in one process, so drift (load, clocks, heat) hits each alike."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..models.per_sample_conv import record_strategies
from .speed import (
    DEFAULT_MIN_TIME,
    DEFAULT_WARMUP,
    SpeedResult,
    _build_step,
    _summarise,
    amp_dtype,
    fixed_threads,
    resolve_device,
    time_runs,
)


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


def measure_paired(model: torch.nn.Module, baseline: torch.nn.Module, mode: str, batch_size: int,
                   input_size: tuple[int, ...], rounds: int, device: str = "cpu", threads: int | None = None,
                   warmup: int | None = None, min_time: float | None = None, min_runs: int = 1,
                   channels_last: bool = False, amp: str | None = None, compile: bool = False,
                   num_classes: int | None = None) -> tuple[SpeedResult, list[float]]:
    """Time `model` round-robin with `baseline` in this process: its SpeedResult (runs of every round pooled)
    and the per-round ratios of baseline time to its time (above 1: faster than the baseline)."""
    dev = resolve_device(device)
    dtype = amp_dtype(amp)
    warmup = DEFAULT_WARMUP[dev.type] if warmup is None else warmup
    min_time = DEFAULT_MIN_TIME[dev.type] if min_time is None else min_time
    with fixed_threads(threads) as n_threads:
        steps = {name: _build_step(mode, m, batch_size, input_size, dev, channels_last, dtype, compile, num_classes,
                                   0.01) for name, m in (("own", model), ("baseline", baseline))}
        with record_strategies() as used:
            times = time_interleaved(steps, dev, rounds, warmup, min_time, min_runs)
    own = [t for r in times["own"] for t in r]
    result = SpeedResult("ok", None, mode, batch_size, tuple(input_size), str(dev), n_threads, warmup=warmup,
                         min_time=min_time, channels_last=channels_last, amp=amp if dtype else None, compile=compile)
    _summarise(result, own)
    calls = warmup + 1 + len(own)  # forwards of `model` (the baseline's add no per-sample layer calls)
    result.strategies = {k: n // calls for k, n in sorted(used.items())}
    return result, round_ratios(times["own"], times["baseline"])
