"""Every variant's forward is CUDA-graph capturable: no host sync, no Python branch on a tensor value (on CPU)."""

from __future__ import annotations

import pytest
import torch

import dynconv_bench
from dynconv_bench.models.per_sample_conv import (
    STRATEGIES,
    KernelMixture,
    clear_strategy_cache,
    per_sample_conv,
    use_strategy,
)

from .host_sync import HostSyncError, forbid_host_sync


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    """Tiny forwards: one thread (two spinning OpenMP threads on a busy machine are many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("op", [
    lambda x: x.sum().item(), lambda x: x.tolist(), lambda x: x.cpu(), lambda x: x.numpy(),
    lambda x: bool(x.sum() > 0), lambda x: int(x[0]), lambda x: float(x[0]), lambda x: x.nonzero(),
    lambda x: torch.nonzero(x), lambda x: x[x > 0], lambda x: x.to("cpu"), lambda x: x.to(device="cpu"),
    lambda x: torch.tensor([1.0]), lambda x: x.repeat_interleave(torch.tensor([1, 2, 1])),
    lambda x: [0, 1, 2][x.long()[0]],
], ids=["item", "tolist", "cpu", "numpy", "bool", "int", "float", "nonzero", "torch.nonzero", "bool-mask",
        "to-cpu", "to-device-cpu", "torch.tensor", "repeat_interleave", "index"])
def test_each_host_sync_is_caught(op) -> None:  # noqa: ANN001
    x = torch.tensor([1.0, -2.0, 3.0])
    with pytest.raises(HostSyncError, match="CUDA graph"), forbid_host_sync():
        op(x)


def test_device_side_work_passes() -> None:
    x = torch.randn(2, 4, 8, 8)
    with forbid_host_sync():
        y = torch.where(x > 0, x, 0.1 * x).softmax(1).to(torch.float64)
        y = y.repeat_interleave(2, dim=0) + x.new_zeros(1).to(x.device, torch.float64)
    assert y.shape == (4, 4, 8, 8)


@pytest.mark.parametrize("mixture", [False, True], ids=["kernels", "mixture"])
def test_every_per_sample_strategy_is_capturable(mixture: bool) -> None:
    x, bank, att = torch.randn(3, 8, 9, 9), torch.randn(4, 6, 4, 3, 3), torch.rand(3, 4)
    weight = KernelMixture(att, bank, torch.randn(4, 6)) if mixture else torch.randn(3, 6, 4, 3, 3)
    bias = None if mixture else torch.randn(3, 6)
    for name in STRATEGIES:
        with use_strategy(name), forbid_host_sync():
            out = per_sample_conv(x, weight, bias, (2, 2), (1, 1), (1, 1), 2)
        assert out.shape == (3, 6, 5, 5)


def test_tuned_choice_is_capturable() -> None:
    """After a warm-up tunes a shape, `auto` reads its cached choice: no timing, no sync inside the graph."""
    x, weight = torch.randn(2, 4, 6, 6), torch.randn(2, 5, 4, 3, 3)
    clear_strategy_cache()
    with use_strategy("auto"):
        per_sample_conv(x, weight, None, (1, 1), (1, 1), (1, 1), 1)
        with forbid_host_sync():
            per_sample_conv(x, weight, None, (1, 1), (1, 1), (1, 1), 1)


# resnet18 (dense 3x3/1x1 convs, downsample shortcuts) and mobilenetv2 (depthwise convs, head conv)
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2_050"])
def test_every_variant_forward_makes_no_host_sync(backbone: str, variant_names: list[str]) -> None:
    """Eval forward at batch 2 and 1 (one strategy forced: each is checked above, and tuning is quick then)."""
    failures = []
    for name in variant_names:
        model = dynconv_bench.create_model(backbone, name, num_classes=10).eval()
        x = torch.randn(2, 3, 32, 32)
        try:
            with torch.no_grad(), use_strategy("grouped"), forbid_host_sync():
                model(x), model(x[:1])
        except HostSyncError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, failures


def test_kerneldna_architecture_forward_makes_no_host_sync() -> None:
    model = dynconv_bench.create_model("kerneldna_resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), forbid_host_sync():
        assert model(x).shape == (2, 10)
