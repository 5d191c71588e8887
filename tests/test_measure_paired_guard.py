"""measure_paired runs like the other timed paths: cudnn.benchmark as they set it, failures as failed results, the
tuner's dropped strategies recorded (SpeedResult.strategy_failures, also in measure_inference)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynconv_bench.metrics.paired_timing import measure_paired
from dynconv_bench.metrics.timing import measure_inference
from dynconv_bench.metrics.timing_result import SpeedResult
from dynconv_bench.models import per_sample_conv as psc

TIMING = {"threads": 1, "warmup": 1, "min_time": 0.0}


class _Probe(nn.Module):
    """Records cudnn.benchmark as each forward sees it; raises when told to."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fail = fail
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.backends.cudnn.benchmark)
        if self.fail:
            raise RuntimeError("boom\nsecond line")
        return self.conv(x)


class _PerSample(nn.Module):
    """A per-sample conv tuned by the strategy tuner (batch > 1, 'auto')."""

    def __init__(self) -> None:
        super().__init__()
        self.bank = nn.Parameter(torch.randn(3, 4, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = torch.softmax(x.mean((2, 3)), 1)
        return psc.per_sample_conv(x, psc.KernelMixture(att, self.bank), None, (1, 1), (1, 1), (1, 1), 1)


@pytest.fixture
def fresh_tuner(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.delenv(psc.STRATEGY_ENV, raising=False)
    monkeypatch.delenv(psc.CACHE_ENV, raising=False)
    psc.clear_strategy_cache()
    yield
    psc.clear_strategy_cache()


@pytest.fixture
def benchmark_on():  # noqa: ANN201
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    yield
    torch.backends.cudnn.benchmark = before


def test_paired_timing_sets_cudnn_benchmark_as_measure_inference_does_and_restores_it(benchmark_on):
    alone, own, base = _Probe(), _Probe(), _Probe()
    assert measure_inference(alone, 2, (3, 8, 8), min_runs=2, **TIMING).ok
    assert measure_paired(own, base, "inference", 2, (3, 8, 8), rounds=2, min_runs=1, **TIMING).ok
    assert set(alone.seen) == set(own.seen) == set(base.seen) == {False}  # on CPU: off, as the other paths set it
    assert torch.backends.cudnn.benchmark is True  # restored


def test_a_failing_model_gives_a_failed_paired_result_and_both_modes_are_restored(benchmark_on):
    own, base = _Probe(fail=True).train(), _Probe().train()
    result = measure_paired(own, base, "inference", 2, (3, 8, 8), rounds=2, min_runs=1, **TIMING)
    assert result.status == "failed" and not result.ok
    assert result.error.startswith("RuntimeError: boom")
    assert result.baseline_ratio is None and result.threads == 1
    assert own.training and base.training  # build_step put them in eval mode for inference
    assert torch.backends.cudnn.benchmark is True
    bad = measure_paired(own, base, "inference", 2, (3, 8, 8), rounds=2, device="cuda", **TIMING)
    if not torch.cuda.is_available():
        assert bad.status == "failed" and "CUDA requested" in bad.error


def test_a_dropped_strategy_is_recorded_in_the_timed_results(fresh_tuner, monkeypatch):
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("out of resource: shared memory")

    monkeypatch.setitem(psc._RUN, "bmm", broken)
    alone = measure_inference(_PerSample(), 2, (3, 8, 8), min_runs=2, **TIMING)
    psc.clear_strategy_cache()
    paired = measure_paired(_PerSample(), _Probe(), "inference", 2, (3, 8, 8), rounds=2, min_runs=1, **TIMING)
    for result in (alone, paired):
        assert result.ok and "bmm" not in result.strategies and sum(result.strategies.values()) == 1
        (line,) = result.strategy_failures
        assert line.startswith("layer (2,3,8,8)|") and line.endswith("| strategy bmm | RuntimeError: out of resource: "
                                                                     "shared memory")
        assert SpeedResult.from_values(result.to_values()).strategy_failures == [line]
    old = alone.to_values()
    del old["strategy_failures"]  # a result stored before the field existed
    assert SpeedResult.from_values(old).strategy_failures == []
