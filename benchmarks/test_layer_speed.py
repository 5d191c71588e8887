"""Micro-benchmarks of each registered variant's converted layer at ResNet-18 shapes (pytest-benchmark).

Run: pytest benchmarks/ --benchmark-enable --benchmark-json=out.json (compare commits with
--benchmark-compare). The forward benchmark runs once per per-sample conv strategy (and `auto`). The layer is the last conv of a two-block ResNet stage after conversion, so
cross-layer variants (KernelDNA) are measured on a child that borrows its parent's kernel.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from timm.models.resnet import BasicBlock
from torch import nn

import dynconv_bench
from dynconv_bench.models.per_sample_conv import STRATEGIES, use_strategy

BATCH = 8
SHAPES = [(64, 56), (128, 28), (256, 14)]  # (channels, height = width) of ResNet-18's 3x3 stages


def converted_layer(variant: str, channels: int, size: int) -> tuple[nn.Module, torch.Tensor]:
    """The last converted layer of a two-block stage, and an input of the shape it sees."""
    stage = nn.Sequential(OrderedDict(layer=nn.Sequential(BasicBlock(channels, channels),
                                                          BasicBlock(channels, channels))))
    dynconv_bench.convert(stage, variant)
    names = stage.dynconv_report.converted or ["layer.1.conv2"]
    layer = stage.get_submodule(names[-1])
    seen: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    with torch.no_grad():
        stage(torch.randn(BATCH, channels, size, size))
    handle.remove()
    return layer, torch.randn_like(seen["x"])


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.mark.parametrize("strategy", [*STRATEGIES, "auto"])
@pytest.mark.parametrize("channels, size", SHAPES, ids=[f"c{c}-{s}x{s}" for c, s in SHAPES])
@pytest.mark.parametrize("variant", dynconv_bench.list_variants())
def test_forward(benchmark, variant: str, channels: int, size: int, strategy: str) -> None:  # noqa: ANN001
    """Forward of one converted layer per per-sample conv strategy (variants without one run it unchanged)."""
    layer, x = converted_layer(variant, channels, size)
    layer.eval()
    benchmark.group = f"forward c{channels} {size}x{size} batch {BATCH}"
    benchmark.extra_info["strategy"] = strategy

    def step() -> torch.Tensor:
        with torch.inference_mode(), use_strategy(strategy):
            return layer(x)

    out = benchmark(step)
    assert out.shape[0] == BATCH


@pytest.mark.parametrize("channels, size", SHAPES, ids=[f"c{c}-{s}x{s}" for c, s in SHAPES])
@pytest.mark.parametrize("variant", dynconv_bench.list_variants())
def test_forward_backward(benchmark, variant: str, channels: int, size: int) -> None:  # noqa: ANN001
    layer, x = converted_layer(variant, channels, size)
    layer.train()
    x.requires_grad_(True)
    benchmark.group = f"forward+backward c{channels} {size}x{size} batch {BATCH}"

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).square().mean().backward()

    benchmark(step)
    assert x.grad is not None
