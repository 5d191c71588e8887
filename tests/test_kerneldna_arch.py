"""Tests of the KernelDNA paper architectures (variants/kerneldna_arch.py)."""

from __future__ import annotations

import dynconv_bench_variants.kerneldna_arch  # noqa: F401  (the module under test registers the architectures)
import pytest
import timm
import torch
import torch.nn.functional as F
from dynconv_bench_variants.kerneldna import KernelDNAConv
from timm.models.resnet import Bottleneck
from torch import nn

import dynconv_bench

from .test_kerneldna import assert_deploy_equivalent, children_of, n_params, randomize_kerneldna, se_params

ARCHS = ["kerneldna_resnet18", "kerneldna_resnet50", "kerneldna_mobilenetv2_100", "kerneldna_mobilenetv2_050"]

# Reference values: parameter counts (1000 classes) of the official release's models, github.com/haiduo/KernelDNA
# at commit a8cb91a, obtained by building its models/KDNA_*.py definitions (torchvision based) and counting
# with fvcore.nn.parameter_count as its metrics.py does. (The paper's own table was not available to check.)
OFFICIAL_PARAMS = {
    "kerneldna_resnet18": 9_240_798,
    "kerneldna_resnet50": 22_778_060,
    "kerneldna_mobilenetv2_100": 3_136_840,
    "kerneldna_mobilenetv2_050": 1_878_232,
}


def test_registered_with_timm_and_listed() -> None:
    assert sorted(timm.list_models("kerneldna_*")) == sorted(ARCHS)
    assert set(ARCHS) <= set(dynconv_bench.models.backbones.list_backbones())
    for arch in ARCHS:
        assert dynconv_bench.models.backbones.default_input_size(arch) == (3, 224, 224)


@pytest.mark.parametrize("arch", ARCHS)
def test_param_count_equals_official_release(arch: str) -> None:
    model = timm.create_model(arch)
    assert n_params(model) == OFFICIAL_PARAMS[arch]
    from fvcore.nn import parameter_count
    assert parameter_count(model)[""] == OFFICIAL_PARAMS[arch]


def _adapter(c_out: int, c_in: int, spatial: int, reduction: int) -> int:
    """Static modulation + SE of one child."""
    return spatial + c_out + se_params(c_in, reduction)


def test_param_counts_follow_from_the_static_backbones() -> None:
    # resnet18: per stage, 4 dense 3x3 convs -> 3 (one full kernel gone), 2 more BNs, 3 child adapters
    expected = n_params(timm.create_model("resnet18"))
    for p in (256, 512):
        expected += -9 * p * p + 4 * p + 3 * _adapter(p, p, 9, 4)
    assert n_params(timm.create_model("kerneldna_resnet18")) == expected
    # resnet50: layer3 gains one bottleneck and 3 of its 3x3 kernels become children; layer4 one child
    expected = n_params(timm.create_model("resnet50"))
    expected += n_params(Bottleneck(1024, 256)) + 3 * (-9 * 256 * 256 + _adapter(256, 256, 9, 4))
    expected += -9 * 512 * 512 + _adapter(512, 512, 9, 4)
    assert n_params(timm.create_model("kerneldna_resnet50")) == expected
    # mobilenetv2: every middle block of the 4 shared stages gives up its two pointwise kernels
    for width, chans in ((100, (32, 64, 96, 160)), (50, (16, 32, 48, 80))):
        expected = n_params(timm.create_model(f"mobilenetv2_{width:03d}"))
        for c, kids in zip(chans, (1, 2, 1, 1)):
            h = 6 * c
            expected += kids * (-2 * c * h + _adapter(h, c, 0, 4) + _adapter(c, h, 0, 24))
        assert n_params(timm.create_model(f"kerneldna_mobilenetv2_{width:03d}")) == expected


def test_structure_resnet18() -> None:
    model = timm.create_model("kerneldna_resnet18")
    for layer in (model.layer3, model.layer4):
        assert len(layer) == 3
        assert layer[0].conv2.weight is layer[1].conv2.weight and layer[1].conv1.weight is layer[1].conv2.weight
        assert layer[2].conv1.weight is layer[2].conv2.weight
        assert layer[0].conv1.stride == (2, 2) and layer[0].downsample is not None
        for kid in (layer[0].conv2, layer[1].conv1, layer[2].conv1):
            assert kid.spatial.shape == (1, 1, 3, 3) and kid.se is not None
    assert len(children_of(model)) == 6
    assert len(model.layer1) == 2 and not children_of(model.layer1)


def test_structure_resnet50() -> None:
    model = timm.create_model("kerneldna_resnet50")
    assert len(model.layer3) == 7 and len(model.layer4) == 3
    for i in (1, 3, 5):
        assert model.layer3[i].conv2.weight is model.layer3[i + 1].conv2.weight
        assert isinstance(model.layer3[i + 1].conv2, nn.Conv2d)
    assert model.layer4[1].conv2.weight is model.layer4[2].conv2.weight
    kids = children_of(model)
    assert len(kids) == 4 and all(k.kernel_size == (3, 3) and k.stride == (1, 1) for k in kids.values())


@pytest.mark.parametrize("width, chans", [("100", (32, 64, 96, 160)), ("050", (16, 32, 48, 80))])
def test_structure_mobilenetv2(width: str, chans: tuple[int, ...]) -> None:
    model = timm.create_model(f"kerneldna_mobilenetv2_{width}")
    static = timm.create_model(f"mobilenetv2_{width}")
    assert [len(s) for s in model.blocks] == [len(s) for s in static.blocks]  # same depth
    for stage, c, kids in zip(model.blocks[2:6], chans, (1, 2, 1, 1)):
        last = stage[-1]
        for blk in stage[1:-1]:
            assert blk.conv_pw.weight is last.conv_pw.weight and blk.conv_pwl.weight is last.conv_pwl.weight
            assert blk.conv_pw.spatial is None and blk.conv_pw.filter.shape == (6 * c, 1, 1, 1)
            assert blk.conv_pw.se.reduce.out_channels == c // 4
            assert blk.conv_pwl.se.reduce.out_channels == 6 * c // 24
            assert type(blk.conv_dw) is nn.Conv2d  # own depthwise conv
        assert len(stage) - 2 == kids and last.conv_pwl.out_channels == c
    assert len(children_of(model)) == 10


@pytest.mark.parametrize("arch", ARCHS)
def test_deploy_equivalence(arch: str) -> None:
    model = randomize_kerneldna(timm.create_model(arch, num_classes=10))
    deployed = assert_deploy_equivalent(model, (3, 64, 64))
    grouped = [m.groups for m in deployed.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    static = timm.create_model(arch.replace("kerneldna_", ""))
    assert grouped == [m.groups for m in static.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]


def test_create_model_builds_and_converts() -> None:
    model = dynconv_bench.create_model("kerneldna_mobilenetv2_050", "static", num_classes=7)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_pretrained_is_refused() -> None:
    with pytest.raises(dynconv_bench.UserError, match="pretrained"):
        timm.create_model("kerneldna_resnet18", pretrained=True)


def test_batch_independence_in_eval() -> None:
    model = randomize_kerneldna(timm.create_model("kerneldna_mobilenetv2_050", num_classes=10)).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(full, single, rtol=1e-5, atol=1e-5 * full.abs().max().item())


def test_children_equal_parent_conv_on_se_scaled_input_at_init() -> None:
    model = timm.create_model("kerneldna_resnet18").eval()
    kid, parent = model.layer3[1].conv1, model.layer3[1].conv2
    x = torch.randn(2, 256, 8, 8)
    torch.testing.assert_close(kid(x), parent(x * kid.se(x)), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["kerneldna_resnet18", "kerneldna_mobilenetv2_050"])
def test_gradients_reach_every_parameter(arch: str) -> None:
    model = timm.create_model(arch, num_classes=10).train()
    F.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([1, 2])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for kid in children_of(model).values():
        assert isinstance(kid, KernelDNAConv) and kid.filter.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_deploy_equivalence_at_224(arch: str) -> None:
    model = randomize_kerneldna(timm.create_model(arch))
    assert_deploy_equivalent(model, (3, 224, 224))


def test_child_se_convs_are_attention_sites() -> None:
    from dynconv_bench.models.sites import find_conv_sites

    roles = {s.name: s.role for s in find_conv_sites(timm.create_model("kerneldna_resnet18"))}
    assert roles["layer3.0.conv2.se.reduce"] == roles["layer3.1.conv1.se.expand"] == "attention"
    assert roles["layer3.1.conv2"] == "block" and roles["layer3.0.downsample.0"] == "shortcut"
