"""The shared machinery of the K-kernel dynamic convs (variants/_dynamic.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dynconv_bench_variants._dynamic import (
    DynamicConv2d,
    aggregate_kernels,
    per_sample_conv,
)
from dynconv_bench_variants._temperature import TemperatureSchedule
from dynconv_bench_variants.dyconv import DyConv2d
from timm.layers import Conv2dSame
from torch import nn

from dynconv_bench.models.conv_spec import ConvSpec

from .conftest import DYNAMIC_CONV_CASES, make_case_conv


def test_aggregate_kernels_is_the_attention_weighted_sum():
    bank = torch.randn(3, 4, 2, 3, 3)
    attn = torch.rand(5, 3)
    out = aggregate_kernels(attn, bank)
    assert out.shape == (5, 4, 2, 3, 3)
    for b in range(5):
        ref = sum(attn[b, k] * bank[k] for k in range(3))
        torch.testing.assert_close(out[b], ref, rtol=1e-5, atol=1e-6)


def _loop_reference(x, weight, bias, conv):
    return torch.cat([
        F.conv2d(x[b:b + 1], weight[b], None if bias is None else bias[b], conv.stride, conv.padding,
                 conv.dilation, conv.groups)
        for b in range(x.shape[0])
    ])


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_per_sample_conv_equals_one_conv_per_sample(case, batch, strategy):
    conv = make_case_conv(case)
    x = torch.randn(batch, conv.in_channels, 11, 11)
    weight = torch.randn(batch, *conv.weight.shape)
    bias = torch.randn(batch, conv.out_channels) if conv.bias is not None else None
    out = per_sample_conv(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    torch.testing.assert_close(out, _loop_reference(x, weight, bias, conv), rtol=1e-5, atol=1e-5)


def test_batch_one_is_a_plain_conv():
    x, w, b = torch.randn(1, 4, 9, 9), torch.randn(1, 6, 4, 3, 3), torch.randn(1, 6)
    out = per_sample_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1)
    assert torch.equal(out, F.conv2d(x, w[0], b[0], 1, 1))


@pytest.mark.parametrize("batch", [1, 4])
def test_channels_last_input_gives_the_same_values_and_format(batch, strategy):
    x = torch.randn(batch, 8, 10, 10)
    w = torch.randn(batch, 6, 8, 3, 3)
    ref = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    out = per_sample_conv(x.to(memory_format=torch.channels_last), w, None, (1, 1), (1, 1), (1, 1), 1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_autocast_bf16_on_cpu_runs_in_bf16_and_stays_close(strategy):
    x = torch.randn(3, 8, 10, 10)
    w = torch.randn(3, 6, 8, 3, 3) * 0.1
    ref = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = per_sample_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("conv", [
    Conv2dSame(6, 8, 3, stride=2, bias=True),
    nn.Conv2d(6, 8, 3, padding=1, padding_mode="reflect"),
    nn.Conv2d(6, 8, 3, padding=2, dilation=2, padding_mode="circular", bias=False),
], ids=["tf-same", "reflect", "circular"])
def test_one_kernel_layer_reproduces_the_conv_it_replaces(conv, strategy):
    # With K=1 the softmax attention is exactly 1, so the layer must compute what the conv does.
    layer = DyConv2d(conv, num_kernels=1)
    with torch.no_grad():
        layer.weight.copy_(conv.weight.unsqueeze(0))
        if conv.bias is not None:
            layer.bias.copy_(conv.bias.unsqueeze(0))
    for batch in (1, 3):
        x = torch.randn(batch, 6, 13, 13)
        torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
def test_geometry_matches_the_replaced_conv(case):
    conv = make_case_conv(case)
    layer = DyConv2d(conv, num_kernels=3)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(layer, attr) == getattr(conv, attr), attr
    assert isinstance(layer.kernel_size, tuple) and isinstance(layer.dilation, tuple)
    assert layer.weight.shape == (3, *conv.weight.shape)
    assert (layer.bias is None) == (conv.bias is None)
    assert layer.geometry == ConvSpec.from_conv(conv)  # one frozen spec, no kept conv


class _Bank(DynamicConv2d):
    def forward(self, x):  # pragma: no cover - only the bank is tested
        raise NotImplementedError


@pytest.mark.parametrize(("conv", "init", "fan_out"), [
    (nn.Conv2d(64, 96, 3), "fan_out", 96 * 9),
    (nn.Conv2d(96, 96, 3, groups=96), "fan_out", 96 * 9),
    (nn.Conv2d(64, 96, 3), "fan_out_grouped", 96 * 9),
    (nn.Conv2d(96, 96, 3, groups=96), "fan_out_grouped", 9),
])
def test_each_kernel_is_initialised_independently_with_kaiming_std(conv, init, fan_out):
    bank = _Bank(conv, num_kernels=4, kernel_init=init).weight.detach()
    std = math.sqrt(2.0 / fan_out)
    for i in range(4):
        assert bank[i].std().item() == pytest.approx(std, rel=0.1)
        assert bank[i].mean().abs().item() < 0.1 * std
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(bank[i], bank[j])


def test_bad_construction_arguments_raise():
    with pytest.raises(ValueError, match="num_kernels"):
        _Bank(nn.Conv2d(4, 4, 3), num_kernels=0)
    with pytest.raises(ValueError, match="kernel_init"):
        _Bank(nn.Conv2d(4, 4, 3), num_kernels=2, kernel_init="xavier")


def test_set_progress_anneals_and_is_reached_through_the_model():
    from dynconv_bench import set_progress

    schedule = TemperatureSchedule(30.0, "fraction", fraction=0.2, min_iters=0)
    model = nn.Sequential(DyConv2d(nn.Conv2d(4, 4, 3), temperature=schedule))
    assert model[0].temperature == 30.0
    set_progress(model, 0.1)
    assert model[0].temperature == pytest.approx(15.5)
    set_progress(model, 1.0)
    assert model[0].temperature == 1.0


def test_module_to_channels_last_keeps_the_5d_bank_and_its_identity():
    # nn.Module.to(memory_format=channels_last) rejects 5-D parameters unless the layer handles it
    layer = DyConv2d(nn.Conv2d(8, 12, 3, padding=1), num_kernels=4)
    bank = layer.weight
    layer(torch.randn(2, 8, 9, 9)).sum().backward()
    layer.to(memory_format=torch.channels_last)
    assert layer.weight is bank and bank.shape == (4, 12, 8, 3, 3) and bank.is_contiguous()
    assert bank.grad.shape == (4, 12, 8, 3, 3)
    layer.to(torch.float64)
    assert layer.weight is bank and bank.dtype == torch.float64 and bank.grad.dtype == torch.float64
