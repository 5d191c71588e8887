"""DCD (variants/dcd.py): W(x) = Lambda(x) W0 + P Phi(x) Q^T against a per-sample reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dynconv_bench_variants.dcd import DCDConv2d, latent_dim, supported
from torch import nn

from dynconv_bench import ConfigError, create_model

from .conftest import DYNAMIC_CONV_CASES, make_case_conv

CASES = [c for c in DYNAMIC_CONV_CASES if supported(make_case_conv(c.values[0]))]


def _reference(layer: DCDConv2d, x: torch.Tensor) -> torch.Tensor:
    """Each sample's dense kernel Lambda W0 + P Phi Q^T (on the centre tap), one plain conv per sample."""
    lam, phi = layer.dynamics(x)
    c = layer.conv
    g, cout, cin = c.groups, c.out_channels, c.in_channels
    kh, kw = c.kernel_size
    dense = torch.zeros(cout, cin, kh, kw)  # the grouped W0 written as a dense kernel
    for o in range(cout):
        gi = o // (cout // g)
        dense[o, gi * (cin // g):(gi + 1) * (cin // g)] = c.weight[o]
    p, q = layer.p.weight[:, :, 0, 0], layer.q.weight[:, :, 0, 0]
    outs = []
    for b in range(x.shape[0]):
        w = lam[b].view(-1, 1, 1, 1) * dense
        w[:, :, kh // 2, kw // 2] += p @ phi[b] @ q
        outs.append(F.conv2d(x[b:b + 1], w, c.bias, c.stride, c.padding, c.dilation, 1))
    return torch.cat(outs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("train", "batch"), [(False, 3), (True, 3), (False, 1), (True, 1)])
def test_batched_equals_per_sample_reference(case, train, batch):
    layer = DCDConv2d(make_case_conv(case), min_channels=4).train(train)
    x = torch.randn(batch, layer.in_channels, 11, 11)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _reference(layer, x), rtol=1e-5, atol=1e-5)


def test_cases_cover_stride_groups_kernels_and_bias():
    shapes = [c.values[0] for c in CASES]
    assert {s[2] for s in shapes} >= {1, 3} and any(s[3] == 2 for s in shapes)
    assert any(s[6] > 1 for s in shapes) and any(s[7] for s in shapes)


def test_latent_dim_follows_the_paper():
    # L = floor(C / 2^floor(log2 sqrt(C))): sqrt(C) <= L < 2 sqrt(C)
    assert [latent_dim(c) for c in (16, 64, 96, 256, 512)] == [4, 8, 12, 16, 32]
    layer = DCDConv2d(nn.Conv2d(64, 32, 3, padding=1), reduction=16)
    assert layer.latent == 8 and layer.fc.out_features == 4  # max(64, 8*8) // 16
    assert layer.fc_phi.out_features == 64 and layer.fc_scale.out_features == 32


def test_dynamic_branch_parts():
    layer = DCDConv2d(nn.Conv2d(16, 8, 1), min_channels=4).eval()
    x = torch.randn(2, 16, 5, 5)
    lam, phi = layer.dynamics(x)
    assert lam.shape == (2, 8) and phi.shape == (2, 4, 4)
    assert ((lam >= 0) & (lam <= 1)).all()  # hard-sigmoid channel attention
    with torch.no_grad():
        layer.p.weight.zero_()  # without the residual the layer is the channel-scaled static conv
        torch.testing.assert_close(layer(x), lam.view(2, 8, 1, 1) * layer.conv(x) - lam.view(2, 8, 1, 1)
                                   * layer.conv.bias.view(1, -1, 1, 1) + layer.conv.bias.view(1, -1, 1, 1))


def test_policy_leaves_depthwise_and_shortcut_convs_static():
    model = create_model("mobilenetv2_100", "dcd")
    converted = model.dynconv_report.converted
    assert converted and not any("conv_dw" in n for n in converted)
    r18 = create_model("resnet18", "dcd")
    assert len(r18.dynconv_report.converted) == 16 and not any("downsample" in n for n in r18.dynconv_report.converted)


def test_eval_output_of_a_sample_does_not_depend_on_its_batch():
    model = create_model("cifar_resnet20", "dcd", num_classes=5).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    layer = DCDConv2d(nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=True)).train()
    layer(torch.randn(3, 8, 9, 9)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_config_errors():
    with pytest.raises(ConfigError, match="valid keys"):
        create_model("resnet18", "dcd", num_kernels=4)
    with pytest.raises(ValueError, match="odd kernel"):
        DCDConv2d(nn.Conv2d(4, 4, 2))
