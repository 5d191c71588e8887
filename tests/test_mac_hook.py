"""A multi-branch plugin layer declares its conv MACs through `DynamicLayer.conv_macs`: the MAC counter and the
leaderboard's overhead column then count only its attention (and the fusion of the branches) as overhead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynconv_bench import DynamicLayer, Param, Variant, profile, register_variant
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.metrics.flop_handles import default_handles
from dynconv_bench.models.convert import create_model
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.rows import load_results


class Select(nn.Module):
    """Selective-Kernel attention: pooled sum of the branches -> two softmaxed channel weights -> weighted sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 4, 4)
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, 2 * channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = self.fc2(torch.relu(self.fc1((a + b).mean((2, 3))))).view(-1, 2, a.shape[1]).softmax(1)
        return a * w[:, 0, :, None, None] + b * w[:, 1, :, None, None]


class TwoBranch(nn.Module, DynamicLayer):
    """A 3x3 and a dilated 3x3 branch of the replaced conv's shape, fused by `Select`."""

    declare = True

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size, self.groups = (conv.in_channels, conv.out_channels,
                                                                              (3, 3), 1)
        self.branch3 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1, bias=False)
        self.branch5 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 2, dilation=2, bias=False)
        self.select = Select(conv.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.branch3(x), self.branch5(x))

    def conv_macs(self, out_size: tuple[int, ...]) -> int | None:
        if not self.declare:
            return None
        per_position = sum(b.out_channels * b.in_channels * 9 for b in (self.branch3, self.branch5))
        return per_position * out_size[0] * out_size[1]


class Undeclared(TwoBranch):
    declare = False


class TwoBranchVariant(Variant):
    name = "two-branch-test"
    params = {"policy": Param("blocks", type=str)}
    layer = TwoBranch

    def convert_conv(self, site):  # noqa: ANN001, ANN201
        conv = site.conv
        return self.layer(conv) if tuple(conv.kernel_size) == (3, 3) and conv.groups == 1 else None


class UndeclaredVariant(TwoBranchVariant):
    name = "two-branch-undeclared-test"
    layer = Undeclared


@pytest.fixture(autouse=True)
def registered():  # noqa: ANN201
    """The plugin variants, registered for these tests only (other tests list every registered variant)."""
    from dynconv_bench.models import registry

    for cls in (TwoBranchVariant, UndeclaredVariant):
        register_variant(cls)
    yield
    for cls in (TwoBranchVariant, UndeclaredVariant):
        registry._VARIANTS.pop(cls.name, None)


def _by_module(model: nn.Module, size: tuple[int, ...], batch: int = 2) -> dict[str, float]:
    """fvcore's own count per module (per image), independent of the conv/overhead split under test."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    analysis = FlopCountAnalysis(model, (torch.randn(batch, *size),)).set_op_handle(**default_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return {k: v / batch for k, v in analysis.by_module().items()}


def test_declared_branches_are_conv_macs_and_only_the_attention_is_overhead() -> None:
    size = (3, 32, 32)
    model = create_model("cifar_resnet8", "two-branch-test", num_classes=10)
    counts = _by_module(model, size)
    layers = [n for n, m in model.named_modules() if isinstance(m, TwoBranch)]
    assert len(layers) >= 4
    attention = sum(counts[f"{n}.select"] for n in layers)
    branches = sum(counts[f"{n}.branch3"] + counts[f"{n}.branch5"] for n in layers)
    prof = profile(model, input_size=size)
    assert prof.overhead_macs == pytest.approx(attention, abs=len(layers))  # per-layer rounding only
    rows = prof.breakdown.set_index("name")
    assert rows.loc[layers, "conv_macs"].sum() == pytest.approx(branches, abs=len(layers))
    # without the hook the dilated branch is "overhead": the count the hook exists to correct
    plain = profile(create_model("cifar_resnet8", "two-branch-undeclared-test", num_classes=10), input_size=size)
    assert plain.macs == prof.macs
    assert plain.overhead_macs - prof.overhead_macs == pytest.approx(branches / 2, abs=2 * len(layers))


def test_the_leaderboard_overhead_column_shows_only_the_attention(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "mh", "backbones": ["cifar_resnet8"], "variants": ["static", "two-branch-test"],
                         "measure": {"macs": {"num_classes": 10, "threads": 1}}})
    run_suite(suite, tmp_path / "mh.sqlite", executor=LocalExecutor(), progress=False)
    board = leaderboards(load_results(tmp_path / "mh.sqlite", "mh"))["cifar_resnet8"]
    model = create_model("cifar_resnet8", "two-branch-test", num_classes=10)
    counts = _by_module(model, (3, 32, 32))
    attention = sum(v for k, v in counts.items() if k.endswith(".select"))
    expected = 100.0 * attention / board.loc["two-branch-test", "MACs trained form (M)"] / 1e6
    assert board.loc["two-branch-test", "overhead (% MACs)"] == pytest.approx(expected, rel=1e-4)
    assert board.loc["static", "overhead (% MACs)"] == 0.0


def test_a_declared_count_above_what_the_layer_ran_is_refused() -> None:
    class Greedy(TwoBranch):
        def conv_macs(self, out_size: tuple[int, ...]) -> int | None:
            return 10**12

    model = create_model("cifar_resnet8", "two-branch-test", num_classes=10)
    name, layer = next((n, m) for n, m in model.named_modules() if isinstance(m, TwoBranch))
    layer.__class__ = Greedy
    with pytest.raises(ValueError, match=rf"converted layer '{name}' \(Greedy\) declares .* conv MACs"):
        profile(model, input_size=(3, 32, 32))
