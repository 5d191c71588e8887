"""Round-robin timing: round order, per-round ratios, process CPU time and the machine-load probe."""

from __future__ import annotations

import os
import statistics
import time
from types import SimpleNamespace

import pytest
import torch

from dynconv_bench.metrics import timing
from dynconv_bench.metrics.paired_timing import round_ratios, time_interleaved
from dynconv_bench.metrics.timing import machine_load

CPU = torch.device("cpu")


def test_order_reversed_every_other_round() -> None:
    calls: list[str] = []
    steps = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    out = time_interleaved(steps, CPU, rounds=4, warmup=2, min_time=0.0, min_runs=1)
    # warm-up: `warmup` runs and one discarded timed run per step, in order; then the rounds
    assert calls == list("aaabbbccc") + list("abc" "cba" "abc" "cba")
    assert {n: [len(r) for r in rounds] for n, rounds in out.items()} == {n: [1, 1, 1, 1] for n in "abc"}


def test_min_runs_per_round() -> None:
    steps = {"a": lambda: None, "b": lambda: None}
    out = time_interleaved(steps, CPU, rounds=3, warmup=0, min_time=0.0, min_runs=5)
    assert [len(r) for r in out["a"]] == [5, 5, 5] and [len(r) for r in out["b"]] == [5, 5, 5]


def test_round_ratios_are_baseline_median_over_own_median() -> None:
    own = [[1.0, 3.0, 2.0], [4.0], [2.0, 2.0]]
    base = [[2.0, 6.0, 4.0], [2.0], [1.0, 5.0]]  # medians 4, 2, 3
    assert round_ratios(own, base) == [2.0, 0.5, 1.5]


class FakeClock:
    """perf_counter of a machine whose load changes between rounds: a step 'sleeping' d takes d x load."""

    def __init__(self, loads: list[float], runs_per_round: int, warmup_calls: int) -> None:
        self.now, self.calls, self.loads = 0.0, 0, loads
        self.per_round, self.warmup_calls = runs_per_round, warmup_calls

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, d: float) -> None:
        timed = max(0, self.calls - self.warmup_calls)
        self.now += d * self.loads[min(timed // self.per_round, len(self.loads) - 1)]
        self.calls += 1


def test_ratios_of_known_sleeps_under_drifting_load(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = [1.0, 4.0, 0.5]
    clock = FakeClock(loads, runs_per_round=2 * 3, warmup_calls=2)  # 2 steps x 3 runs; 1 discarded run each
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=clock.perf_counter, process_time=time.process_time))
    steps = {"slow": lambda: clock.sleep(0.02), "fast": lambda: clock.sleep(0.01)}
    out = time_interleaved(steps, CPU, rounds=3, warmup=0, min_time=0.0, min_runs=3)
    assert [r[0] for r in out["fast"]] == pytest.approx([0.01 * f for f in loads])
    assert round_ratios(out["fast"], out["slow"]) == pytest.approx([2.0, 2.0, 2.0])
    assert round_ratios(out["slow"], out["fast"]) == pytest.approx([0.5, 0.5, 0.5])


def test_ratios_of_real_sleeps() -> None:
    steps = {"slow": lambda: time.sleep(0.02), "fast": lambda: time.sleep(0.01)}
    out = time_interleaved(steps, CPU, rounds=3, warmup=0, min_time=0.0, min_runs=3)
    ratios = round_ratios(out["fast"], out["slow"])
    # 2 on an idle machine; a sleep overshoots by a few ms on a busy one, which pulls the ratio towards 1
    assert len(ratios) == 3 and 1.3 < statistics.median(ratios) < 2.2, ratios


def test_cpu_times_tell_work_from_waiting() -> None:
    def busy() -> None:
        sum(i * i for i in range(200_000))

    cpu: dict[str, list[float]] = {}
    out = time_interleaved({"busy": busy, "sleep": lambda: time.sleep(0.02)}, CPU, rounds=2, warmup=0,
                           min_time=0.0, min_runs=2, cpu_times=cpu)
    assert sorted(cpu) == ["busy", "sleep"] and [len(v) for v in cpu.values()] == [2, 2]
    assert len(out["busy"]) == 2
    # sleeping costs wall time but almost no CPU; the busy loop's CPU time is its work
    assert max(cpu["sleep"]) * 10 < min(cpu["busy"])


def test_without_cpu_times_nothing_is_collected() -> None:
    out = time_interleaved({"a": lambda: None}, CPU, rounds=2, warmup=0, min_time=0.0, min_runs=1)
    assert list(out) == ["a"] and len(out["a"]) == 2


def test_machine_load_keys_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakePath:
        def __init__(self, path: str) -> None:
            assert path == "/proc/cpuinfo"

        def read_text(self) -> str:
            return "processor\t: 0\ncpu MHz\t\t: 1000.0\nprocessor\t: 1\ncpu MHz\t\t: 2001.0\n"

    monkeypatch.setattr(timing, "Path", FakePath)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 2.0, 1.0))
    assert machine_load() == {"load_avg": 3.5, "cores": os.cpu_count(), "cpu_mhz": 1500.5}


def test_machine_load_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFile:
        def __init__(self, path: str) -> None:
            pass

        def read_text(self) -> str:
            raise OSError("no /proc here")

    def no_load() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(timing, "Path", NoFile)
    monkeypatch.setattr(os, "getloadavg", no_load)
    assert machine_load() == {"load_avg": None, "cores": os.cpu_count(), "cpu_mhz": None}
