"""ODConv (variants/odconv.py): per-sample reference, attention, schedule, parameter counts."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from dynconv_bench_variants.odconv import ODConv, ODConv2d
from torch import nn

from dynconv_bench import ConfigError, DynamicLayer, create_model, set_progress

from .conftest import DYNAMIC_CONV_CASES, assert_channels_last_and_bf16_match_float32, make_case_conv


def _randomise_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _reference(layer: ODConv2d, x: torch.Tensor) -> torch.Tensor:
    """Each sample convolved alone with its own kernel, all four attentions put on the kernel."""
    channel, filt, spatial, kernel = layer.attention(x, layer.temperature)
    k_total, c_out, cin_g = layer.weight.shape[:3]
    outs = []
    for b in range(x.shape[0]):
        w = torch.zeros_like(layer.weight[0])
        for i in range(k_total):
            a = 1.0 if kernel is None else kernel[b, i]
            w = w + a * layer.weight[i]
        if spatial is not None:
            w = w * spatial[b]
        if filt is not None:
            w = w * filt[b].view(c_out, 1, 1, 1)
        per_group = c_out // layer.groups
        for o in range(c_out):  # input channel j of output o's group is input channel g*cin_g + j
            g = o // per_group
            w[o] = w[o] * channel[b, g * cin_g:(g + 1) * cin_g].view(cin_g, 1, 1)
        bias = None
        if layer.bias is not None:
            bias = layer.bias[0] if kernel is None else sum(kernel[b, i] * layer.bias[i] for i in range(k_total))
        outs.append(F.conv2d(x[b:b + 1], w, bias, layer.stride, layer.padding, layer.dilation, layer.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize("num_kernels", [1, 4])
@pytest.mark.parametrize(("train", "batch"), [(False, 3), (True, 3), (False, 1)])
@pytest.mark.parametrize("on_kernel", ["maps", "kernel", "columns"])
def test_batched_equals_per_sample_reference(case, num_kernels, train, batch, on_kernel, strategy):
    # every way of applying channel/filter/spatial attention: on the feature maps, folded into the
    # kernel, or on the unfolded input columns (taken only where it applies: groups 1, numeric padding)
    layer = ODConv2d(make_case_conv(case), num_kernels=num_kernels, min_channels=4, temperature=3.0)
    layer._cheaper_on_kernel = lambda x: on_kernel == "kernel"
    applies = layer.groups == 1 and not isinstance(layer.padding, str)
    layer._cheaper_on_columns = lambda x: on_kernel == "columns" and applies
    _randomise_bn(layer)
    layer.train(train)
    x = torch.randn(batch, layer.in_channels, 12, 12)
    with torch.no_grad():
        out = layer(x)
        ref = _reference(layer, x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_batch_one_equals_reference_in_training_mode():
    layer = ODConv2d(nn.Conv2d(8, 12, 3, padding=1, bias=True), num_kernels=4, min_channels=4).train()
    x = torch.randn(1, 8, 10, 10)
    out = layer(x)
    torch.testing.assert_close(out, _reference(layer, x), rtol=1e-5, atol=1e-5)
    out.sum().backward()  # batch-1 BatchNorm on pooled features must not fail
    assert layer.weight.grad is not None


def test_attention_heads_follow_the_paper():
    layer = ODConv2d(nn.Conv2d(32, 48, 3, padding=1), num_kernels=4, reduction=0.25, min_channels=4,
                     temperature=7.0).eval()
    _randomise_bn(layer)
    att = layer.attention
    assert att.fc.out_channels == 8 and att.fc.bias is None
    x = torch.randn(2, 32, 8, 8)
    s = F.relu(att.bn(att.fc(x.mean((2, 3), keepdim=True))))
    channel, filt, spatial, kernel = att(x, 7.0)
    torch.testing.assert_close(channel, torch.sigmoid(att.channel_fc(s).flatten(1) / 7.0))
    torch.testing.assert_close(filt, torch.sigmoid(att.filter_fc(s).flatten(1) / 7.0))
    torch.testing.assert_close(spatial, torch.sigmoid(att.spatial_fc(s).flatten(1) / 7.0).view(2, 3, 3))
    torch.testing.assert_close(kernel, torch.softmax(att.kernel_fc(s).flatten(1) / 7.0, 1))
    torch.testing.assert_close(kernel.sum(1), torch.ones(2))


@pytest.mark.parametrize(("conv", "k", "present"), [
    (nn.Conv2d(16, 16, 3, groups=16), 4, {"channel_fc", "spatial_fc", "kernel_fc"}),
    (nn.Conv2d(16, 32, 1), 4, {"channel_fc", "filter_fc", "kernel_fc"}),
    (nn.Conv2d(16, 32, 3), 1, {"channel_fc", "filter_fc", "spatial_fc"}),
    (nn.Conv2d(16, 32, 1), 1, {"channel_fc", "filter_fc"}),
])
def test_heads_are_skipped_where_the_official_release_skips_them(conv, k, present):
    att = ODConv2d(conv, num_kernels=k).attention
    heads = {"channel_fc", "filter_fc", "spatial_fc", "kernel_fc"}
    assert {h for h in heads if getattr(att, h) is not None} == present


def test_attention_is_applied_where_it_touches_fewer_numbers():
    early = ODConv2d(nn.Conv2d(64, 64, 3, padding=1), num_kernels=4)  # big maps, small kernel
    late = ODConv2d(nn.Conv2d(512, 512, 3, padding=1), num_kernels=4)  # small maps, big kernel
    assert early._cheaper_on_kernel(torch.empty(16, 64, 56, 56))
    assert not late._cheaper_on_kernel(torch.empty(16, 512, 7, 7))


def test_attention_width_uses_reduction_and_floor():
    assert ODConv2d(nn.Conv2d(512, 512, 3)).attention.fc.out_channels == 32
    assert ODConv2d(nn.Conv2d(64, 64, 3)).attention.fc.out_channels == 16


def test_eval_output_of_a_sample_does_not_depend_on_its_batch(strategy):
    model = create_model("cifar_resnet8", "odconv", num_classes=10).eval()
    _randomise_bn(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_columns_path_is_taken_where_kernels_outweigh_the_unfolded_input():
    layer = ODConv2d(nn.Conv2d(8, 64, 3, padding=1), num_kernels=1, min_channels=4)
    assert layer._cheaper_on_columns(torch.randn(2, 8, 4, 4))  # 64 outputs >= 2 x 16 positions
    assert not layer._cheaper_on_columns(torch.randn(2, 8, 6, 6))  # 64 < 2 x 36
    calls = []
    layer._conv_columns = lambda *a: calls.append(a) or torch.zeros(2, 64, 4, 4)
    layer(torch.randn(2, 8, 4, 4))
    layer(torch.randn(1, 8, 4, 4))  # one sample: its own kernel, no columns
    assert len(calls) == 1


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("columns", [False, True])
def test_every_parameter_gets_a_gradient(batch, columns, strategy, monkeypatch):
    monkeypatch.setattr(ODConv2d, "_cheaper_on_columns", lambda self, x: columns and self.groups == 1)
    model = create_model("cifar_resnet8", "odconv", num_classes=10, temperature=2.0).train()
    F.cross_entropy(model(torch.randn(batch, 3, 32, 32)), torch.arange(batch)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_channels_last_and_bf16_autocast_match_float32():
    model = create_model("cifar_resnet8", "odconv", num_classes=10, temperature=1.0).eval()
    assert_channels_last_and_bf16_match_float32(model)


def test_temperature_schedule_start_mid_end():
    # default: 30 -> 1 over 10 epochs, as the official train loop counts it (here 10 iterations an epoch)
    model = create_model("cifar_resnet8", "odconv", num_classes=10, anneal_min_iters=0)
    layers = [m for m in model.modules() if isinstance(m, ODConv2d)]
    assert layers and all(isinstance(m, DynamicLayer) for m in layers)
    assert {m.temperature for m in layers} == {30.0}
    set_progress(model, 0.05, iteration=50, iters_per_epoch=10, total_iters=1000)  # 5 of 10 epochs: 1 + 29 / 2
    assert {m.temperature for m in layers} == {15.5}
    set_progress(model, 0.1, iteration=100, iters_per_epoch=10, total_iters=1000)
    assert {m.temperature for m in layers} == {1.0}
    set_progress(model, 1.0, iteration=1000, iters_per_epoch=10, total_iters=1000)
    assert {m.temperature for m in layers} == {1.0}


def test_default_policy_matches_the_official_models():
    r18 = create_model("resnet18", "odconv").dynconv_report
    assert len(r18.converted) == 16 and "conv1" not in r18.converted
    assert not any("downsample" in n for n in r18.converted)
    mb = create_model("mobilenetv2_100", "odconv").dynconv_report
    assert mb.total_convs == 52 and len(mb.converted) == 51
    assert "conv_stem" not in mb.converted and "conv_head" in mb.converted


# Exact counts of the official OSVAI/ODConv models (models/od_resnet.py, od_mobilenetv2.py at commit
# acb771c, 1000 classes), obtained by instantiating them; README table values in millions beside them.
OFFICIAL = {
    ("resnet18", 1): (11_943_944, 11.94), ("resnet18", 4): (44_901_640, 44.90),
    ("resnet50", 1): (28_635_112, 28.64), ("resnet50", 4): (90_670_888, 90.67),
    ("mobilenetv2_100", 1): (4_940_185, 4.94), ("mobilenetv2_100", 4): (11_512_149, 11.51),
    ("mobilenetv2_050", 1): (2_425_537, 2.43), ("mobilenetv2_050", 4): (4_435_501, 4.44),
}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("backbone", "k"), [
    pytest.param(b, k, marks=pytest.mark.slow if b == "resnet50" else ()) for b, k in OFFICIAL
])
def test_parameter_count_equals_the_official_release(backbone, k):
    exact, table_m = OFFICIAL[(backbone, k)]
    n = _params(create_model(backbone, "odconv", num_classes=1000, num_kernels=k))
    assert n == exact
    # the README rounds to 10k params: MobileNetV2 0.5x (2.4255M -> "2.43M") is off by rounding alone
    assert abs(n - table_m * 1e6) <= max(1e-3 * table_m * 1e6, 5e3)
    if backbone != "mobilenetv2_050":
        assert abs(n / (table_m * 1e6) - 1) < 1e-3


def test_timm_mobilenetv2_050_has_the_official_stem_and_head_width():
    # official OD-MobileNetV2 0.5x: stem 16 channels, head stays 1280 (last_channel * max(1, width))
    m = timm.create_model("mobilenetv2_050")
    assert m.conv_stem.out_channels == 16 and m.conv_head.out_channels == 1280


def test_config_errors_name_the_valid_keys():
    with pytest.raises(ConfigError, match="did you mean 'num_kernels'"):
        ODConv(num_kernel=4)
    with pytest.raises(ConfigError, match="minimum"):
        ODConv(reduction=0.0)
    assert ODConv(reduction=1).cfg["reduction"] == 1.0
    assert ODConv().cfg == {"num_kernels": 4, "reduction": 0.0625, "min_channels": 16, "temperature": 30.0,
                            "anneal_unit": "epoch", "anneal_epochs": 10.0, "anneal_fraction": 0.1,
                            "anneal_min_iters": 200, "policy": "blocks+head"}
