from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

import dynconv_bench
from dynconv_bench import UserError, convert, create_model, deploy, set_progress
from dynconv_bench.models.backbones import STANDARD_BACKBONES

from .conftest import small_input_size


def test_static_is_the_backbone_unchanged():
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", num_classes=10).eval()
    model = convert(timm.create_model("resnet18", num_classes=10), "static").eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), ref(x))
    assert model.dynconv_report.converted == []


def test_static_se_all_wraps_every_block_conv_and_keeps_its_weight():
    base = timm.create_model("resnet18")
    conv = base.layer1[0].conv1
    model = convert(base, "static-se", sites="all")
    report = model.dynconv_report
    assert len(report.converted) == 16 and report.total_convs == 20
    assert model.layer1[0].conv1.conv is conv
    assert "layer2.0.downsample.0" not in report.converted
    assert report.summary().startswith("static-se: converted 16 of 20 convs")


def _se_params(c: int, reduction: int = 4) -> int:
    h = max(c // reduction, 1)
    return c * h + 2 * h + h * c + c  # reduce (no bias), BN affine, expand (+bias)


def test_static_se_puts_se_where_kerneldna_puts_adapters():
    # MobileNetV2 1.0x: KernelDNA derives children only from the repeated expansion convs whose
    # adapter is cheaper than the kernel (not the depthwise or projection convs)
    sites = ["blocks.2.1.conv_pw", "blocks.3.1.conv_pw", "blocks.3.2.conv_pw", "blocks.4.1.conv_pw",
             "blocks.5.1.conv_pw"]
    kdna = create_model("mobilenetv2_100", "kerneldna")
    se = create_model("mobilenetv2_100", "static-se")
    assert kdna.dynconv_report.converted == sites and se.dynconv_report.converted == sites
    static = sum(p.numel() for p in timm.create_model("mobilenetv2_100").parameters())
    inputs = [32, 64, 64, 96, 160]  # in_channels of those convs
    assert [se.get_submodule(n).in_channels for n in sites] == inputs
    assert sum(p.numel() for p in se.parameters()) == static + sum(_se_params(c) for c in inputs) == 3_527_512
    every = create_model("mobilenetv2_100", "static-se", sites="all")
    assert len(every.dynconv_report.converted) == 50  # the old choice: 8.1M, 2.3x static
    # on ResNet-20 the children are every block conv except each stage's first conv and its parent
    r20 = create_model("cifar_resnet20", "static-se", num_classes=10).dynconv_report.converted
    assert r20 == create_model("cifar_resnet20", "kerneldna", num_classes=10).dynconv_report.converted
    assert len(r20) == 13 and "layer2.0.conv1" not in r20 and "layer3.2.conv2" not in r20


def test_static_se_params_are_exact():
    base = sum(p.numel() for p in timm.create_model("cifar_resnet20").parameters())
    model = create_model("cifar_resnet20", "static-se", num_classes=10)
    extra = 0
    for layer in [m for m in model.modules() if type(m).__name__ == "SEConv"]:
        c, h = layer.in_channels, max(layer.in_channels // 4, 1)
        extra += c * h + 2 * h + h * c + c  # reduce (no bias), BN affine, expand (+bias)
    assert sum(p.numel() for p in model.parameters()) == base + extra


def test_create_model_rejects_unknown_names():
    with pytest.raises(UserError, match="unknown backbone 'resnet1'.*did you mean 'resnet18'"):
        create_model("resnet1")
    with pytest.raises(UserError, match="unknown variant 'odconf'.*did you mean 'odconv'"):
        create_model("resnet18", "odconf")
    with pytest.raises(UserError, match="unknown policy"):
        create_model("resnet18", "static-se", policy="stem-only")


def test_create_model_refuses_pretrained_downloads():
    with pytest.raises(UserError, match="never downloads"):
        create_model("resnet18", pretrained=True)


class _Tempered(dynconv_bench.DynamicLayer, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def set_progress(self, fraction: float) -> None:
        self.seen.append(fraction)


def test_set_progress_reaches_every_layer_and_clamps():
    model = nn.Sequential(_Tempered(), nn.Sequential(_Tempered()))
    set_progress(model, 0.5)
    set_progress(model, 1.7)
    assert model[0].seen == [0.5, 1.0] and model[1][0].seen == [0.5, 1.0]


def test_deploy_returns_an_eval_copy():
    model = create_model("cifar_resnet8", "static-se", num_classes=10).train()
    deployed = deploy(model)
    assert model.training and not deployed.training
    assert deployed is not model
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(deployed(x), model.eval()(x))


@pytest.mark.parametrize("backbone", STANDARD_BACKBONES)
def test_every_variant_converts_runs_forward_and_backward(backbone, variant_names):
    """Every registered variant on every listed backbone: shapes kept, grads flow, the report counts right."""
    size = small_input_size(backbone)
    total = sum(isinstance(m, nn.Conv2d) for m in timm.create_model(backbone, num_classes=7).modules())
    for variant in variant_names:
        model = create_model(backbone, variant, num_classes=7).train()
        report = model.dynconv_report
        assert report.total_convs == total
        assert report.summary().startswith(f"{variant}: converted {len(report.converted)} of {total} convs ")
        assert set(report.converted) <= set(report.eligible)
        assert [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n in report.converted] == []
        if variant != "static":
            assert report.converted, f"{variant} converted nothing on {backbone}"
        x = torch.randn(2, *size)
        out = model(x)
        assert out.shape == (2, 7), (variant, backbone)
        out.square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{variant}/{backbone}: no gradient for {missing[:5]}"


class _NetworkShared(dynconv_bench.Variant):
    """A toy cross-stage variant (as a kernel warehouse would be): one weight per shape, network-wide."""

    name = "toy-network-shared"
    params = {"policy": dynconv_bench.Param("blocks", type=str)}

    def convert_model(self, stages):
        replacements, bank = {}, {}
        for ctx in stages:
            for site in ctx.sites:
                key = (site.kernel_size, site.groups)
                conv = nn.Conv2d(site.in_channels, site.out_channels, site.kernel_size, site.stride,
                                 site.conv.padding, groups=site.groups, bias=False)
                shape = tuple(conv.weight.shape)
                conv.weight = bank.setdefault((key, shape), conv.weight)
                replacements[site.name] = conv
        return replacements


def test_a_variant_can_share_state_across_stages():
    model = convert(timm.create_model("resnet18", num_classes=10), _NetworkShared())
    assert model.layer1[0].conv1.weight is model.layer1[1].conv2.weight
    distinct = {id(p) for p in model.parameters()}
    assert len(distinct) < len(list(model.named_parameters(remove_duplicate=False)))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


class _SkipOdd(dynconv_bench.Variant):
    """Returns the conv itself (skip) for odd-indexed sites, None for every third, a copy otherwise."""

    name = "toy-skip"
    params = {"policy": dynconv_bench.Param("blocks", type=str)}

    def convert_conv(self, site):
        if site.index % 2:
            return site.conv
        return None if site.index % 3 == 0 else copy.deepcopy(site.conv)


def test_convert_conv_may_return_the_conv_unchanged_or_none_to_skip_a_site():
    model = convert(timm.create_model("resnet18", num_classes=10), _SkipOdd())
    report = model.dynconv_report
    sites = {s.name: s.index for s in dynconv_bench.find_conv_sites(timm.create_model("resnet18"))}
    expected = [n for n in report.eligible if sites[n] % 2 == 0 and sites[n] % 3 != 0]
    assert report.converted == expected and 0 < len(expected) < len(report.eligible)
