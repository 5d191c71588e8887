"""Timing harness (dynconv_bench/metrics/timing.py): statistics, threads, failures as results.

Only behaviour is tested here (tiny min_time); timings are compared in benchmarks/validate_timer.py.
The CUDA path needs a GPU: here only its failure without one is tested.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from torch import nn

import dynconv_bench
from dynconv_bench.errors import UserError
from dynconv_bench.metrics import timing
from dynconv_bench.metrics.timing import measure_inference, measure_train_step


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return dynconv_bench.create_model("cifar_resnet8", "static", num_classes=10)


def test_inference_statistics_describe_the_recorded_runs(tiny):
    res = measure_inference(tiny, 4, (3, 32, 32), threads=1, warmup=1, min_time=0.05, min_runs=7)
    assert res.ok and res.error is None
    t = res.times_s
    assert res.runs == len(t) >= 7 and (sum(t) >= 0.05 or len(t) == 100_000)
    assert res.median_s == statistics.median(t)
    assert res.iqr_s == pytest.approx(float(np.percentile(t, 75) - np.percentile(t, 25)))
    assert (res.min_s, res.max_s) == (min(t), max(t))
    assert res.throughput == pytest.approx(4 / res.median_s)
    assert res.latency_ms == pytest.approx(1000 * res.median_s)
    d = res.to_values()
    for key in ("status", "error", "batch_size", "runs", "median_s", "iqr_s", "min_s", "max_s", "throughput",
                "latency_ms", "device", "threads"):
        assert key in d
    assert "times_s" not in d and d["threads"] == 1 and d["device"] == "cpu"


def test_threads_are_fixed_during_the_run_and_restored(tiny):
    before = torch.get_num_threads()
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x.flatten(1)

    res = measure_inference(Probe(), 1, (3, 4, 4), threads=1, warmup=0, min_time=0.0, min_runs=2)
    assert res.threads == 1 and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_train_step_updates_a_copy_not_the_callers_model(tiny):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    res = measure_train_step(tiny, 4, (3, 32, 32), num_classes=10, threads=1, warmup=1, min_time=0.0, min_runs=2)
    assert res.ok and res.mode == "train" and res.runs == 2
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())


def test_cuda_without_a_gpu_is_a_failed_result(tiny):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = measure_inference(tiny, 1, (3, 32, 32), device="cuda")
    assert res.status == "failed" and "CUDA" in res.error and res.runs == 0 and res.median_s is None


def test_compile_failure_is_a_failed_result(tiny, monkeypatch):
    def broken_compile(model, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(torch, "compile", broken_compile)
    res = measure_inference(tiny, 1, (3, 32, 32), compile=True, warmup=0, min_time=0.0, min_runs=1)
    assert res.status == "failed" and res.error == "RuntimeError: backend exploded" and res.compile


def test_out_of_memory_in_forward_is_a_failed_result_and_the_caller_goes_on():
    class Oom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")

    before = torch.get_num_threads()
    res = measure_inference(Oom(), 8, (3, 8, 8), threads=1, warmup=1, min_time=0.0)
    assert res.status == "failed" and res.error.startswith("OutOfMemoryError: CUDA out of memory")
    assert torch.get_num_threads() == before


def test_bad_settings_are_user_errors(tiny):
    with pytest.raises(UserError, match="valid: none, fp16, bf16"):
        measure_inference(tiny, 1, (3, 32, 32), amp="fp8")
    with pytest.raises(UserError, match="valid: cpu, cuda"):
        measure_inference(tiny, 1, (3, 32, 32), device="gpu")
    with pytest.raises(UserError, match="threads"):
        measure_inference(tiny, 1, (3, 32, 32), threads=0)


class _Probe(nn.Module):
    """Logs (in a class attribute: the harness times a copy) the autocast dtype and input format at each forward."""

    log: list[tuple[object, bool]] = []

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        type(self).log.append((amp, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
        return self.conv(x).mean((2, 3))


def test_bf16_autocast_and_channels_last_reach_the_timed_forward():
    _Probe.log.clear()
    res = measure_inference(_Probe(), 2, (3, 16, 16), amp="bf16", channels_last=True, warmup=0, min_time=0.0,
                            min_runs=2)
    assert res.ok and set(_Probe.log) == {(torch.bfloat16, True)} and len(_Probe.log) >= 2
    _Probe.log.clear()
    assert measure_inference(_Probe(), 2, (3, 16, 16), warmup=0, min_time=0.0, min_runs=2).ok
    assert set(_Probe.log) == {(None, False)}


def test_time_runs_stops_at_min_runs_and_max_runs():
    calls = []
    times = timing.time_runs(lambda: calls.append(1), torch.device("cpu"), warmup=3, min_time=10.0, max_runs=4)
    assert len(times) == 4 and len(calls) == 7  # min_time not reached: max_runs stops it
    calls.clear()
    times = timing.time_runs(lambda: calls.append(1), torch.device("cpu"), warmup=2, min_time=0.0, min_runs=6)
    assert len(times) == 6 and len(calls) == 8  # min_time reached at once: min_runs keeps it going
    assert all(t >= 0 for t in times)


def test_inference_restores_the_callers_train_mode(tiny):
    tiny.train()
    res = measure_inference(tiny, 2, (3, 32, 32), warmup=0, min_time=0.0, min_runs=1)
    assert res.ok and all(m.training for m in tiny.modules())
    tiny.eval()
    measure_inference(tiny, 2, (3, 32, 32), warmup=0, min_time=0.0, min_runs=1)
    assert not any(m.training for m in tiny.modules())


def test_the_strategy_of_each_per_sample_conv_layer_is_recorded():
    from dynconv_bench.models.per_sample_conv import use_strategy

    model = dynconv_bench.create_model("cifar_resnet8", "dyconv", num_classes=10)
    n_layers = len(model.dynconv_report.converted)
    with use_strategy("bmm"):
        forced = timing.measure_inference(model, 2, (3, 32, 32), threads=1, warmup=2, min_time=0.0, min_runs=3)
    assert forced.strategies == {"bmm": n_layers} and forced.to_values()["strategies"] == {"bmm": n_layers}
    one = timing.measure_inference(model, 1, (3, 32, 32), threads=1, warmup=1, min_time=0.0, min_runs=2)
    assert one.strategies == {"loop": n_layers}
    static = dynconv_bench.create_model("cifar_resnet8", num_classes=10)
    assert timing.measure_inference(static, 2, (3, 32, 32), threads=1, warmup=1, min_time=0.0,
                                   min_runs=2).strategies == {}
