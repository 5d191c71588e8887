"""CondConv (variants/condconv.py): per-sample reference, timm's port, block routing, parameter counts."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from dynconv_bench_variants.condconv import CondConv, CondConv2d
from timm.layers import CondConv2d as TimmCondConv2d
from torch import nn

from dynconv_bench import ConfigError, DynamicLayer, create_model, deploy, set_progress

from .conftest import DYNAMIC_CONV_CASES, assert_channels_last_and_bf16_match_float32, make_case_conv


def _reference(layer: CondConv2d, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Each sample convolved alone with sum_i r_i W_i (and sum_i r_i b_i)."""
    outs = []
    for b in range(x.shape[0]):
        w = sum(r[b, i] * layer.weight[i] for i in range(layer.num_kernels))
        bias = None if layer.bias is None else sum(r[b, i] * layer.bias[i] for i in range(layer.num_kernels))
        outs.append(F.conv2d(x[b:b + 1], w, bias, layer.stride, layer.padding, layer.dilation, layer.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_equals_per_sample_reference(case, batch, strategy):
    layer = CondConv2d(make_case_conv(case), num_kernels=4)
    x = torch.randn(batch, layer.in_channels, 12, 12)
    with torch.no_grad():
        r = torch.sigmoid(layer.router(x.mean((2, 3))))
        torch.testing.assert_close(layer.routing(x), r)
        torch.testing.assert_close(layer(x), _reference(layer, x, r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in DYNAMIC_CONV_CASES if c.values[0][4] != "same"])
def test_equals_timms_port_of_the_official_layer(case):
    layer = CondConv2d(make_case_conv(case), num_kernels=3)
    cin, cout, k, stride, padding, dilation, groups, bias = case
    ref = TimmCondConv2d(cin, cout, k, stride, padding, dilation, groups, bias, num_experts=3)
    with torch.no_grad():
        ref.weight.copy_(layer.weight.flatten(1))
        if bias:
            ref.bias.copy_(layer.bias)
        x = torch.randn(4, cin, 12, 12)
        torch.testing.assert_close(layer(x), ref(x, layer.routing(x)), rtol=1e-5, atol=1e-5)


def test_block_routing_shares_the_vector_of_the_blocks_input():
    model = create_model("cifar_resnet8", "condconv", num_classes=10, routing="block").eval()
    block = model.layer2[0]
    conv1, conv2 = block.conv1, block.conv2
    assert conv1.router is not None and conv2.router is None and conv2._leader[0] is conv1
    seen = {}
    block.register_forward_pre_hook(lambda m, a: seen.__setitem__("block_in", a[0]))
    conv2.register_forward_pre_hook(lambda m, a: seen.__setitem__("conv2_in", a[0]))
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
        r = torch.sigmoid(conv1.router(seen["block_in"].mean((2, 3))))
        x2 = seen["conv2_in"]
        torch.testing.assert_close(conv2(x2), _reference(conv2, x2, r), rtol=1e-5, atol=1e-5)


def test_block_routing_follower_without_its_leader_fails_clearly():
    leader = CondConv2d(nn.Conv2d(4, 4, 3, padding=1), 2)
    follower = CondConv2d(nn.Conv2d(4, 4, 3, padding=1), 2, routing_from=leader)
    with pytest.raises(RuntimeError, match="before the block's first CondConv"):
        follower(torch.randn(2, 4, 6, 6))
    with pytest.raises(ValueError, match="owns a router"):
        CondConv2d(nn.Conv2d(4, 4, 3), 2, routing_from=follower)


def test_deploy_and_deepcopy_keep_the_shared_router_inside_the_copy():
    model = create_model("cifar_resnet8", "condconv", num_classes=10, routing="block").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    for clone in (deploy(model), copy.deepcopy(model)):
        assert clone.layer2[0].conv2._leader[0] is clone.layer2[0].conv1
        with torch.no_grad():
            torch.testing.assert_close(clone(x), ref)


# Published CondConv-EfficientNet-B0 parameter counts (paper, Table 2), in millions.
PUBLISHED = {4: 13.3, 8: 24.0}


@pytest.mark.parametrize("experts", [4, 8])
def test_efficientnet_b0_parameter_counts(experts):
    model = create_model("efficientnet_b0", "condconv", num_kernels=experts, policy="last-3-stages",
                         routing="block")
    n = sum(p.numel() for p in model.parameters())
    official = timm.create_model(f"efficientnet_cc_b0_{experts}e")  # timm's port of the official model
    assert n == sum(p.numel() for p in official.parameters())
    assert abs(n / (PUBLISHED[experts] * 1e6) - 1) < 0.01
    assert len(model.dynconv_report.converted) == 24  # 8 blocks x (pw, dw, pwl)


def test_per_layer_routing_adds_one_router_per_conv():
    block = create_model("efficientnet_b0", "condconv", num_kernels=4, policy="last-3-stages", routing="block")
    layer = create_model("efficientnet_b0", "condconv", num_kernels=4, policy="last-3-stages")
    followers = [m for m in block.modules() if isinstance(m, CondConv2d) and m.router is None]
    extra = sum(m.in_channels * 4 + 4 for m in followers)
    assert len(followers) == 16
    assert sum(p.numel() for p in layer.parameters()) - sum(p.numel() for p in block.parameters()) == extra


def test_default_experts_depend_on_the_backbone_and_are_reported():
    eff = create_model("efficientnet_b0", "condconv", policy="last-3-stages")
    res = create_model("resnet18", "condconv")
    assert eff.dynconv_report.config["num_kernels"] == 8
    assert res.dynconv_report.config["num_kernels"] == 4
    assert {m.num_kernels for m in res.modules() if isinstance(m, CondConv2d)} == {4}
    assert len(res.dynconv_report.converted) == 16  # policy "blocks": no stem, no shortcut


def test_eval_output_of_a_sample_does_not_depend_on_its_batch(strategy):
    model = create_model("cifar_resnet8", "condconv", num_classes=10, routing="block").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([model(x[i:i + 1]) for i in range(4)]),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("routing", ["layer", "block"])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_parameter_gets_a_gradient(routing, batch, strategy):
    model = create_model("cifar_resnet8", "condconv", num_classes=10, routing=routing).train()
    F.cross_entropy(model(torch.randn(batch, 3, 32, 32)), torch.arange(batch)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_channels_last_and_bf16_autocast_match_float32():
    model = create_model("cifar_resnet8", "condconv", num_classes=10, routing="block").eval()
    assert_channels_last_and_bf16_match_float32(model)


def test_no_temperature_progress_is_a_no_op():
    model = create_model("cifar_resnet8", "condconv", num_classes=10)
    layers = [m for m in model.modules() if isinstance(m, CondConv2d)]
    assert all(isinstance(m, DynamicLayer) for m in layers)
    set_progress(model, 0.0)
    assert {m.temperature for m in layers} == {1.0}
    set_progress(model, 0.5)
    assert {m.temperature for m in layers} == {1.0}


def test_config_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid: layer, block"):
        CondConv(routing="blok")
    with pytest.raises(ConfigError, match="minimum 1"):
        CondConv(num_kernels=0)
    with pytest.raises(ConfigError, match="valid keys: num_kernels, policy, routing"):
        CondConv(temperature=30.0)
