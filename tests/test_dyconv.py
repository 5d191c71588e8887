"""DyConv (variants/dyconv.py): per-sample reference, attention, schedule, parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dynconv_bench_variants.dyconv import DyConv, DyConv2d
from torch import nn

from dynconv_bench import ConfigError, DynamicLayer, create_model, set_progress

from .conftest import DYNAMIC_CONV_CASES, assert_channels_last_and_bf16_match_float32, make_case_conv


def _reference(layer: DyConv2d, x: torch.Tensor) -> torch.Tensor:
    """Each sample convolved alone with sum_k pi_k W_k and sum_k pi_k b_k."""
    pi = layer.attention(x, layer.temperature)
    outs = []
    for b in range(x.shape[0]):
        w = sum(pi[b, k] * layer.weight[k] for k in range(layer.num_kernels))
        bias = None if layer.bias is None else sum(pi[b, k] * layer.bias[k] for k in range(layer.num_kernels))
        outs.append(F.conv2d(x[b:b + 1], w, bias, layer.stride, layer.padding, layer.dilation, layer.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_equals_per_sample_reference(case, batch, strategy):
    layer = DyConv2d(make_case_conv(case), num_kernels=4, temperature=2.0)
    x = torch.randn(batch, layer.in_channels, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _reference(layer, x), rtol=1e-5, atol=1e-5)


def test_attention_is_a_tempered_softmax_over_kernels():
    layer = DyConv2d(nn.Conv2d(32, 16, 3), num_kernels=4, reduction=4)
    att = layer.attention
    assert (att.fc1.in_features, att.fc1.out_features, att.fc2.out_features) == (32, 8, 4)
    x = torch.randn(3, 32, 6, 6)
    logits = att.fc2(F.relu(att.fc1(x.mean((2, 3)))))
    for t in (30.0, 1.0):
        pi = att(x, t)
        torch.testing.assert_close(pi, torch.softmax(logits / t, 1))
        torch.testing.assert_close(pi.sum(1), torch.ones(3))
    # a high temperature makes the attention near-uniform (the reason it anneals from 30)
    assert (att(x, 1e6) - 0.25).abs().max() < 1e-4


def test_min_channels_floors_the_bottleneck():
    assert DyConv2d(nn.Conv2d(3, 8, 3), reduction=4).attention.fc1.out_features == 1
    assert DyConv2d(nn.Conv2d(16, 8, 3), reduction=4, min_channels=8).attention.fc1.out_features == 8


def test_temperature_schedule_start_mid_end():
    model = create_model("cifar_resnet8", "dyconv", num_classes=10, anneal_unit="fraction", anneal_fraction=0.2)
    layers = [m for m in model.modules() if isinstance(m, DyConv2d)]
    assert layers and all(isinstance(m, DynamicLayer) for m in layers)
    assert {m.temperature for m in layers} == {30.0}
    set_progress(model, 0.1)
    assert {m.temperature for m in layers} == {15.5}
    set_progress(model, 0.2)
    assert {m.temperature for m in layers} == {1.0}
    set_progress(model, 1.0)
    assert {m.temperature for m in layers} == {1.0}


def test_default_policy_is_every_conv_but_the_stem():
    report = create_model("resnet18", "dyconv").dynconv_report
    assert report.total_convs == 20 and len(report.converted) == 19 and "conv1" not in report.converted
    assert "layer2.0.downsample.0" in report.converted


def test_parameter_count_is_exact():
    base = create_model("cifar_resnet8", "static", num_classes=10)
    model = create_model("cifar_resnet8", "dyconv", num_classes=10, num_kernels=3)
    convs = dict(base.named_modules())
    expected = sum(p.numel() for p in base.parameters())
    for name in model.dynconv_report.converted:
        conv = convs[name]
        c, hidden = conv.in_channels, max(conv.in_channels // 4, 1)
        expected += 2 * conv.weight.numel()  # K=3 kernels replace one
        expected += c * hidden + hidden + hidden * 3 + 3  # FC1 and FC2 with biases
    assert sum(p.numel() for p in model.parameters()) == expected


def test_eval_output_of_a_sample_does_not_depend_on_its_batch(strategy):
    model = create_model("cifar_resnet8", "dyconv", num_classes=10, temperature=1.0).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([model(x[i:i + 1]) for i in range(4)]),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_every_parameter_gets_a_gradient(batch, strategy):
    model = create_model("cifar_resnet8", "dyconv", num_classes=10, temperature=1.0).train()
    F.cross_entropy(model(torch.randn(batch, 3, 32, 32)), torch.arange(batch)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_channels_last_and_bf16_autocast_match_float32():
    model = create_model("cifar_resnet8", "dyconv", num_classes=10, temperature=1.0).eval()
    assert_channels_last_and_bf16_match_float32(model)


def test_config_defaults_and_errors():
    assert DyConv().cfg == {"num_kernels": 4, "reduction": 4, "min_channels": 1, "temperature": 30.0,
                            "anneal_unit": "epoch", "anneal_epochs": 10.0, "anneal_fraction": 0.1,
                            "anneal_min_iters": 200, "policy": "no-stem"}
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        DyConv(temprature=10.0)
    with pytest.raises(ConfigError, match="must be int"):
        DyConv(reduction=0.25)
    with pytest.raises(ConfigError, match="above the maximum"):
        DyConv(anneal_fraction=1.5)
