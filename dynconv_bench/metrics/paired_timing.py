"""Round-robin timing with a baseline in one process: drift (load, clocks, heat) hits both models alike, and the
ratio of their times is taken per round. `measure_paired` times a model against its baseline; `time_interleaved`
and `round_ratios` are the parts (the benchmarks use them on their own).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..models.per_sample_conv import record_strategies
from .timing import (
    DEFAULT_MIN_TIME,
    DEFAULT_WARMUP,
    amp_dtype,
    build_step,
    cudnn_benchmark,
    error_text,
    fixed_threads,
    process_usage,
    record_usage,
    resolve_device,
    summarise,
    time_runs,
)
from .timing_result import SpeedResult


def time_interleaved(steps: dict[str, Callable[[], Any]], device: torch.device, rounds: int, warmup: int,
                     min_time: float, min_runs: int, cpu_times: dict[str, list[float]] | None = None,
                     runs: Mapping[str, int] | None = None) -> dict[str, list[list[float]]]:
    """Per-run seconds of each step per round: every step is warmed up, then each round times every step
    for `min_time / rounds` seconds (at least `min_runs` runs), in reversed order every other round.

    `runs` (a calibration): exactly that many runs per round for a step instead. `cpu_times`, when given,
    receives each step's process CPU seconds per run, one mean per round.
    """
    names = list(steps)
    for name in names:
        time_runs(steps[name], device, warmup, 0.0, 1)
    out: dict[str, list[list[float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            cpu: list[float] = []
            fixed = (runs or {}).get(name)
            timed = (time_runs(steps[name], device, 0, 0.0, fixed, fixed, cpu) if fixed
                     else time_runs(steps[name], device, 0, min_time / rounds, min_runs, cpu_times=cpu))
            out[name].append(timed)
            if cpu_times is not None:
                cpu_times.setdefault(name, []).append(statistics.fmean(cpu))
    return out


def round_ratios(own: list[list[float]], baseline: list[list[float]]) -> list[float]:
    """Per round: baseline's median time over this model's (above 1: faster than the baseline)."""
    return [statistics.median(b) / statistics.median(o) for o, b in zip(own, baseline)]


def measure_paired(model: nn.Module, baseline: nn.Module, mode: str, batch_size: int,
                   input_size: tuple[int, ...], rounds: int, device: str = "cpu", threads: int | None = None,
                   warmup: int | None = None, min_time: float | None = None, min_runs: int = 1,
                   channels_last: bool = False, amp: str | None = None, compile: bool = False,
                   num_classes: int | None = None, runs_per_round: Mapping[str, int] | None = None) -> SpeedResult:
    """Time `model` round-robin with `baseline` in this process: its SpeedResult (runs of every round pooled)
    with the median, min and max of the per-round ratios of baseline time to its time (above 1: faster), the
    ratios themselves (`round_ratios`, one list: this process) and the tuned strategies (`strategy_plan`).

    `runs_per_round` ({"own": n, "baseline": m}, e.g. another process's `runs_per_round`) fixes the run counts.
    As in `measure_inference`: cudnn.benchmark on CUDA, and a failure (OOM, compile error, a layer none of whose
    strategies runs) becomes a failed result with the error; both models' train/eval modes are restored.
    """
    dev = resolve_device(device)
    dtype = amp_dtype(amp)
    warmup = DEFAULT_WARMUP[dev.type] if warmup is None else warmup
    min_time = DEFAULT_MIN_TIME[dev.type] if min_time is None else min_time
    result = SpeedResult("failed", None, mode, batch_size, list(input_size), str(dev), None, warmup=warmup,
                         min_time=min_time, channels_last=channels_last, amp=amp if dtype else None, compile=compile)
    if dev.type == "cuda" and not torch.cuda.is_available():
        result.error = "CUDA requested but torch.cuda.is_available() is False (no GPU or no CUDA driver)"
        return result
    modes = [(m, m.training) for m in (model, baseline)]
    cpu: dict[str, list[float]] = {}
    with fixed_threads(threads) as n_threads, cudnn_benchmark(dev.type == "cuda"):
        result.threads = n_threads
        steps: dict[str, Callable[[], Any]] = {}
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            steps = {name: build_step(mode, m, batch_size, input_size, dev, channels_last, dtype, compile,
                                      num_classes, 0.01) for name, m in (("own", model), ("baseline", baseline))}
            usage = process_usage()
            with record_strategies() as used:
                times = time_interleaved(steps, dev, rounds, warmup, min_time, min_runs, cpu, runs_per_round)
            own = [t for r in times["own"] for t in r]
            summarise(result, own)
            record_usage(result, usage, sum(len(r) for t in times.values() for r in t) + 2 * (warmup + 1))
            result.cpu_s, result.baseline_cpu_s = statistics.median(cpu["own"]), statistics.median(cpu["baseline"])
            result.baseline_median_s = statistics.median([t for r in times["baseline"] for t in r])
            calls = warmup + 1 + len(own)  # forwards of `model` (the baseline's add no per-sample layer calls)
            result.strategies = {k: n // calls for k, n in sorted(used.items())}
            result.strategy_plan = dict(sorted(used.plan.items()))
            result.strategy_failures = list(used.failures)
            ratios = round_ratios(times["own"], times["baseline"])
            result.rounds, result.runs_per_round = rounds, {n: len(times[n][0]) for n in times}
            result.round_ratios = [ratios]  # this process's; combine_processes pools every process's rounds
            result.baseline_ratio = statistics.median(ratios)
            result.baseline_ratio_min, result.baseline_ratio_max = min(ratios), max(ratios)
            result.status = "ok"
        except Exception as exc:  # OOM, compile failure, unsupported op: a failed result, the caller goes on
            result.status, result.error = "failed", error_text(exc)
        finally:
            steps = {}  # noqa: F841 - drop the model copies before emptying the cache
            for m, training in modes:
                m.train(training)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return result
