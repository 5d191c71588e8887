"""Tests of the KernelDNA plug-in variant (variants/kerneldna.py)."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from dynconv_bench_variants._se import SEConv
from dynconv_bench_variants.kerneldna import KernelDNA, KernelDNAConv, share_kernel
from torch import nn

import dynconv_bench
from dynconv_bench import ConfigError, convert, create_model, deploy
from dynconv_bench.models.sites import find_conv_sites, select_sites


def se_params(channels: int, reduction: int = 4) -> int:
    """Parameters of KernelDNA's SE: C->C/r conv (no bias), BN (2 per channel), C/r->C conv with bias."""
    hidden = max(channels // reduction, 1)
    return channels * hidden + 2 * hidden + hidden * channels + channels


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_kerneldna(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial static modulation and BN statistics, so that folding and equivalence are really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, KernelDNAConv):
                for p in (m.spatial, m.filter):
                    if p is not None:
                        p.copy_(torch.rand(p.shape, generator=g) - 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


def assert_deploy_equivalent(model: nn.Module, input_size: tuple[int, int, int], batch: int = 2) -> nn.Module:
    model.eval()
    x = torch.randn(batch, *input_size)
    deployed = deploy(model)
    with torch.no_grad():
        ref, out = model(x), deployed(x)
    scale = ref.abs().max().item()
    assert scale > 0
    assert (ref - out).abs().max().item() <= 1e-5 * scale
    assert not any(isinstance(m, KernelDNAConv) for m in deployed.modules())
    return deployed


def children_of(model: nn.Module) -> dict[str, KernelDNAConv]:
    return {n: m for n, m in model.named_modules() if isinstance(m, KernelDNAConv)}


# -- registration and configuration --------------------------------------------------------------
def test_registered_with_paper_defaults() -> None:
    assert "kerneldna" in dynconv_bench.list_variants()
    assert dynconv_bench.get_variant("kerneldna") is KernelDNA
    assert KernelDNA.default_config() == {"reduction": 4, "parent": "last", "spatial": True, "filter": True, "require_saving": True,
                                          "se": True, "policy": "blocks"}


@pytest.mark.parametrize("cfg, match", [
    ({"parent": "middle"}, "valid: first, last"),
    ({"reductoin": 4}, "did you mean 'reduction'"),
    ({"reduction": 0}, "minimum"),
    ({"se": "yes"}, "must be bool"),
    ({"num_kernels": 4}, "valid keys: filter, parent, policy, reduction, require_saving, se, spatial"),
])
def test_bad_config_is_rejected(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        KernelDNA(**cfg)


def test_unknown_policy_is_a_user_error() -> None:
    with pytest.raises(dynconv_bench.UserError, match="valid:"):
        create_model("cifar_resnet8", "kerneldna", num_classes=10, policy="everything")


# -- conversion: which layers, how many parameters --------------------------------------------------
def test_groups_share_one_parent_per_stage() -> None:
    model = create_model("cifar_resnet20", "kerneldna", num_classes=10)
    kids = children_of(model)
    # layer1: 6 convs 16->16 -> 5 children; layer2/3: 5 stride-1 convs each -> 4 children (stride-2 conv1 alone)
    assert len(kids) == 13
    assert sorted(kids) == sorted(model.dynconv_report.converted)
    assert isinstance(model.layer1[2].conv2, nn.Conv2d)  # parent="last": the last member keeps the kernel
    assert isinstance(model.layer2[0].conv1, nn.Conv2d) and isinstance(model.layer2[0].downsample[0], nn.Conv2d)
    for name, kid in kids.items():
        stage = name.split(".")[0]
        parent = model.layer1[2].conv2 if stage == "layer1" else getattr(model, stage)[2].conv2
        assert kid.weight is parent.weight


def test_parent_first() -> None:
    model = create_model("cifar_resnet20", "kerneldna", num_classes=10, parent="first")
    assert isinstance(model.layer1[0].conv1, nn.Conv2d)
    assert isinstance(model.layer1[2].conv2, KernelDNAConv)
    assert model.layer1[2].conv2.weight is model.layer1[0].conv1.weight
    assert model.layer3[1].conv1.weight is model.layer3[0].conv2.weight


def test_exact_param_count_resnet8() -> None:
    # cifar_resnet8: only layer1 has two equal convs (16->16, 3x3) -> one child.
    static = n_params(timm.create_model("cifar_resnet8", num_classes=10))
    model = create_model("cifar_resnet8", "kerneldna", num_classes=10)
    # -16*16*9 (kernel gone) + 9 (S) + 16 (F) + SE(16): 16*4 + 2*4 + 4*16 + 16 = 152
    assert n_params(model) == static - 2304 + 9 + 16 + 152


@pytest.mark.parametrize("cfg", [{}, {"spatial": False}, {"filter": False, "se": False}, {"reduction": 8}])
def test_exact_param_count_matches_independent_formula(cfg: dict) -> None:
    static = timm.create_model("cifar_resnet20", num_classes=10)
    model = convert(copy.deepcopy(static), "kerneldna", **cfg)
    full = KernelDNA.validate(cfg)
    expected = n_params(static)
    for name in model.dynconv_report.converted:
        conv = static.get_submodule(name)
        expected -= conv.weight.numel()
        expected += 9 * full["spatial"] + conv.out_channels * full["filter"]
        expected += se_params(conv.in_channels, full["reduction"]) if full["se"] else 0
    assert n_params(model) == expected


def test_fewer_params_than_static_and_same_depth() -> None:
    static = timm.create_model("resnet18")
    model = convert(copy.deepcopy(static), "kerneldna")
    assert n_params(model) < n_params(static)
    n_static = len(select_sites(find_conv_sites(static), "blocks"))
    n_now = sum(1 for m in model.modules() if isinstance(m, KernelDNAConv)) + \
        len(select_sites(find_conv_sites(model), "blocks"))
    assert n_now == n_static  # every block conv is still there, as a parent or a child


# -- sharing ---------------------------------------------------------------------------------------
def test_sharing_is_real() -> None:
    model = create_model("cifar_resnet8", "kerneldna", num_classes=10)
    parent, child = model.layer1[0].conv2, model.layer1[0].conv1
    assert isinstance(child, KernelDNAConv) and child.weight is parent.weight
    # counted once by parameters() and by the metrics counter
    unique = {id(p): p.numel() for p in model.parameters()}
    assert n_params(model) == sum(unique.values())
    from dynconv_bench.metrics.param_count import count_params
    counts = count_params(model)
    assert counts["total"] == n_params(model)
    assert counts["modulation"] == 9 + 16
    # a gradient from the child alone reaches the parent's weight
    model.zero_grad()
    child(torch.randn(2, 16, 8, 8)).square().sum().backward()
    assert parent.weight.grad is not None and parent.weight.grad.abs().sum() > 0
    # deepcopy keeps the sharing (and does not share with the original)
    dup = copy.deepcopy(model)
    assert dup.layer1[0].conv1.weight is dup.layer1[0].conv2.weight
    assert dup.layer1[0].conv2.weight is not parent.weight


def test_child_equals_parent_at_init_without_se() -> None:
    model = create_model("cifar_resnet20", "kerneldna", num_classes=10, se=False)
    kids = children_of(model)
    assert len(kids) == 13
    for kid in kids.values():
        parent = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight is kid.weight)
        x = torch.randn(2, kid.in_channels, 8, 8)
        assert torch.equal(kid(x), parent(x))


def test_child_with_se_equals_parent_on_scaled_input() -> None:
    parent = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    child = share_kernel(parent, nn.Conv2d(8, 8, 3, padding=1, bias=False))
    child.eval()
    x = torch.randn(3, 8, 10, 10)
    torch.testing.assert_close(child(x), parent(x * child.se(x)), rtol=0, atol=0)


def test_modulated_weight_formula_and_geometry() -> None:
    parent = nn.Conv2d(6, 10, (3, 3), stride=2, padding=1, dilation=1, bias=True)
    child = share_kernel(parent, copy.deepcopy(parent))
    with torch.no_grad():
        child.spatial.normal_()
        child.filter.normal_()
    s, f = child.spatial.detach(), child.filter.detach()
    expected = parent.weight.detach() * (1 + s) * (1 + f)
    torch.testing.assert_close(child.modulated_weight().detach(), expected)
    assert child.bias is parent.bias
    for attr in ("in_channels", "out_channels", "padding", "groups"):
        assert getattr(child, attr) == getattr(parent, attr)
    for attr in ("kernel_size", "stride", "dilation"):
        assert getattr(child, attr) == tuple(getattr(parent, attr))
    assert isinstance(child, dynconv_bench.DynamicLayer)


def test_pointwise_children_have_no_spatial_modulation() -> None:
    child = share_kernel(nn.Conv2d(8, 16, 1, bias=False))
    assert child.spatial is None and child.filter.shape == (16, 1, 1, 1)
    off = share_kernel(nn.Conv2d(8, 16, 3, bias=False), spatial=False, filter=False, se=False)
    assert off.spatial is None and off.filter is None and off.se is None


def test_reflect_padding_is_kept() -> None:
    parent = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", bias=False)
    child = share_kernel(parent, se=False)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(child(x), parent(x))
    torch.testing.assert_close(child.to_conv()(x), parent(x))


def test_share_kernel_rejects_other_geometry() -> None:
    with pytest.raises(ValueError, match="stride"):
        share_kernel(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    with pytest.raises(TypeError):
        KernelDNAConv(nn.Linear(3, 3))  # type: ignore[arg-type]


# -- deploy, batch independence, gradients ---------------------------------------------------------------
@pytest.mark.parametrize("backbone, size", [("cifar_resnet20", (3, 32, 32)), ("mobilenetv2_050", (3, 64, 64))])
def test_deploy_equivalence(backbone: str, size: tuple[int, int, int]) -> None:
    model = randomize_kerneldna(create_model(backbone, "kerneldna", num_classes=10))
    groups_before = sorted(m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
    kids = children_of(model)
    assert kids
    deployed = assert_deploy_equivalent(model, size)
    # each child became its SE + one dense conv holding the folded weight; no grouped conv was introduced
    for name, kid in kids.items():
        new = deployed.get_submodule(name)
        assert isinstance(new, SEConv) and type(new.conv) is nn.Conv2d
        assert new.conv.groups == kid.groups
        torch.testing.assert_close(new.conv.weight, kid.modulated_weight().detach())
        assert new.conv.weight is not kid.weight
    kid_groups = sorted(k.groups for k in kids.values() if k.groups > 1)
    groups_after = sorted(m.groups for m in deployed.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
    assert groups_after == sorted(groups_before + kid_groups)
    # the original is untouched
    assert len(children_of(model)) == len(kids)


def test_deploy_without_se_gives_plain_convs() -> None:
    model = randomize_kerneldna(create_model("cifar_resnet8", "kerneldna", num_classes=10, se=False))
    deployed = assert_deploy_equivalent(model, (3, 32, 32))
    assert type(deployed.layer1[0].conv1) is nn.Conv2d


def test_batch_independence_in_eval() -> None:
    model = randomize_kerneldna(create_model("cifar_resnet20", "kerneldna", num_classes=10)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(full, single, rtol=1e-5, atol=1e-5 * full.abs().max().item())


def test_gradients_reach_every_parameter() -> None:
    model = create_model("cifar_resnet8", "kerneldna", num_classes=10).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_train_batch_of_one_and_set_progress() -> None:
    model = create_model("cifar_resnet8", "kerneldna", num_classes=10).train()
    dynconv_bench.set_progress(model, 0.5)  # nothing to anneal: must be accepted
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2_050", "efficientnet_b0", "cifar_resnet20"])
def test_plugin_has_fewer_parameters_than_static(backbone):
    from dynconv_bench.metrics import count_params

    static = count_params(dynconv_bench.create_model(backbone, "static"))["total"]
    plugin = dynconv_bench.create_model(backbone, "kerneldna")
    assert count_params(plugin)["total"] < static


def test_require_saving_skips_children_that_cost_more_than_their_kernel():
    kept = dynconv_bench.create_model("mobilenetv2_050", "kerneldna")
    every = dynconv_bench.create_model("mobilenetv2_050", "kerneldna", require_saving=False)
    assert len(kept.dynconv_report.converted) < len(every.dynconv_report.converted)
    assert all("conv_dw" not in n for n in kept.dynconv_report.converted)  # 3x3 depthwise: SE costs more
    assert any("conv_dw" in n for n in every.dynconv_report.converted)
