"""KernelWarehouse (variants/kernelwarehouse.py): per-sample reference, warehouses, release parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dynconv_bench_variants.kernelwarehouse import KernelWarehouse, KWConv2d, assign_cells
from torch import nn

from dynconv_bench import ConfigError, StageContext, create_model, set_progress
from dynconv_bench.metrics.param_count import count_params
from dynconv_bench.models.sites import ConvSite

from .conftest import DYNAMIC_CONV_CASES, make_case_conv

# Parameter counts of the official release, counted by instantiating its model code (OSVAI/KernelWarehouse,
# modules/kernel_warehouse.py at commit b1a852ce, models/kw_resnet.py and kw_mobilenetv2.py at commit 4965750,
# read 2026-11-22) with the configs/*.json of each setting and summing model.parameters(). They agree with
# the README's 11.93M / 45.86M / 7.43M / 5.17M / 11.38M.
OFFICIAL_KW1X_RESNET18 = 11_932_148
OFFICIAL_KW4X_RESNET18 = 45_862_085
OFFICIAL_KW1D2X_RESNET18 = 7_431_044
OFFICIAL_KW1X_MOBILENETV2_100 = 5_168_146
OFFICIAL_KW4X_MOBILENETV2_100 = 11_379_382

RELEASE_SETTINGS = [
    pytest.param("resnet18", {}, OFFICIAL_KW1X_RESNET18, id="resnet18-1x"),
    pytest.param("resnet18", {"cell_num_ratio": 4.0}, OFFICIAL_KW4X_RESNET18, id="resnet18-4x"),
    pytest.param("resnet18", {"cell_num_ratio": 0.5, "cell_inplane_ratio": 0.5, "cell_outplane_ratio": 0.5},
                 OFFICIAL_KW1D2X_RESNET18, id="resnet18-1/2x"),
    # the release's MobileNetV2: stem converted too, warehouses split as its sharing_range says
    pytest.param("mobilenetv2_100", {"sharing": "kind", "policy": "all"}, OFFICIAL_KW1X_MOBILENETV2_100,
                 id="mobilenetv2_100-1x"),
    pytest.param("mobilenetv2_100", {"cell_num_ratio": 4.0, "sharing": "position", "policy": "all"},
                 OFFICIAL_KW4X_MOBILENETV2_100, id="mobilenetv2_100-4x"),
]


@pytest.mark.parametrize(("backbone", "preset", "official"), [
    ("resnet18", "paper", OFFICIAL_KW1X_RESNET18), ("resnet18", "paper-4x", OFFICIAL_KW4X_RESNET18),
    ("resnet18", "paper-half", OFFICIAL_KW1D2X_RESNET18), ("mobilenetv2_100", "paper", OFFICIAL_KW1X_MOBILENETV2_100),
    ("mobilenetv2_100", "paper-4x", OFFICIAL_KW4X_MOBILENETV2_100)])
def test_presets_are_the_release_configurations(backbone, preset, official):
    assert count_params(create_model(backbone, "kernelwarehouse", preset=preset))["total"] == official


def test_a_preset_without_the_backbone_names_the_ones_it_has():
    with pytest.raises(ConfigError, match="resnet18"):
        create_model("mobilenetv2_100", "kernelwarehouse", preset="paper-half")


@pytest.mark.parametrize(("backbone", "cfg", "official"), RELEASE_SETTINGS)
def test_parameter_counts_reproduce_the_release(backbone, cfg, official):
    total = count_params(create_model(backbone, "kernelwarehouse", **cfg))["total"]
    assert abs(total - official) / official < 0.002
    assert total == official  # the same warehouses, cells and attention widths as the release


def _single(conv: nn.Conv2d, **cfg) -> KWConv2d:
    site = ConvSite("c", conv, "block", "s", "s.0", 0)
    return KernelWarehouse(**cfg).convert_model([StageContext("s", [site], nn.Module())])["c"]


def _randomise(layer: nn.Module) -> None:
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    if getattr(layer, "fc2", None) is not None:
        nn.init.normal_(layer.fc2.bias, 0.0, 0.5)


def _reference(layer: KWConv2d, x: torch.Tensor) -> torch.Tensor:
    """Each sample's kernel built cell by cell from its attention, then one plain conv per sample."""
    a = layer.attention(x)  # (B, m, n)
    gs, go, gi, co, ci = layer.layout
    kh, kw = layer.kernel_size
    outs = []
    for b in range(x.shape[0]):
        w = torch.zeros(layer.out_channels, gi * ci, kh, kw)
        j = 0
        for pos in range(gs):  # mixture order: kernel position, then output group, then input group
            for og in range(go):
                for ig in range(gi):
                    cell = sum(a[b, j, c] * layer.warehouse[c] for c in range(a.shape[-1]))
                    w[og * co:(og + 1) * co, ig * ci:(ig + 1) * ci, pos // kw, pos % kw] = cell
                    j += 1
        outs.append(F.conv2d(x[b:b + 1], w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("case", DYNAMIC_CONV_CASES)
@pytest.mark.parametrize(("train", "batch"), [(False, 3), (True, 3), (False, 1)])
@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_batched_equals_per_sample_reference(case, train, batch, ratio):
    layer = _single(make_case_conv(case), cell_num_ratio=ratio, min_channels=4, temperature=0.3)
    _randomise(layer)
    layer.train(train)
    x = torch.randn(batch, layer.in_channels, 11, 11)
    with torch.no_grad():
        out = layer(x)
        ref = _reference(layer, x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_attention_is_contrasting_and_starts_from_the_assigned_cells():
    layer = _single(nn.Conv2d(8, 8, 3, padding=1), min_channels=4).eval()
    _randomise(layer)
    x = torch.randn(2, 8, 6, 6)
    layer.temperature = 1.0  # start of training: every mixture is exactly its assigned cell
    torch.testing.assert_close(layer.attention(x), layer.beta[:, :-1].expand(2, -1, -1))
    layer.temperature = 0.0
    s = F.relu(layer.norm(layer.fc1(x.mean((2, 3))).view(2, -1, 1, 1)).view(2, -1))
    logits = layer.fc2(s).view(2, layer.num_mixtures, -1)
    expected = logits / (logits.abs().sum(-1, keepdim=True) + 1e-3)
    torch.testing.assert_close(layer.attention(x), expected[..., :-1])
    assert (layer.attention(x) < 0).any()  # attentions may be negative (no softmax)


def test_assign_cells_follows_the_release_rule():
    beta, end = assign_cells(4, 8, 0, 2.0)  # two cells per mixture, each starts from the first of its two
    assert end == 8 and beta.nonzero().tolist() == [[0, 0], [1, 2], [2, 4], [3, 6]]
    beta, end = assign_cells(4, 2, 0, 0.5)  # half the mixtures get a cell, the others the zero cell (column 2)
    assert end == 2 and beta.nonzero().tolist() == [[0, 0], [1, 2], [2, 2], [3, 1]]


def test_warehouses_are_shared_within_a_stage_with_the_release_handover():
    model = create_model("resnet18", "kernelwarehouse")
    w = {n: m.warehouse for n, m in model.named_modules() if isinstance(m, KWConv2d)}
    assert len({id(p) for p in w.values()}) == 4
    # the entry convs of a stage (conv1 and the shortcut of its first block) use the previous stage's warehouse
    assert w["layer2.0.conv1"] is w["layer1.0.conv1"] is w["layer2.0.downsample.0"]
    assert w["layer2.0.conv2"] is w["layer2.1.conv2"] is w["layer3.0.conv1"]
    assert w["layer4.0.conv2"] is not w["layer3.1.conv2"]
    assert "conv1" not in w  # the stem stays a plain conv by default
    mb = create_model("mobilenetv2_100", "kernelwarehouse", sharing="kind", policy="all")
    w = {n: m.warehouse for n, m in mb.named_modules() if isinstance(m, KWConv2d)}
    assert w["blocks.1.0.conv_pw"] is w["blocks.0.0.conv_pw"]  # inverted residuals: the whole first block
    assert w["blocks.1.0.conv_dw"] is w["blocks.0.0.conv_dw"] is not w["blocks.0.0.conv_pw"]
    assert w["conv_head"] is w["blocks.6.0.conv_pwl"] is w["blocks.5.1.conv_pw"]


def test_default_sharing_is_by_kind_with_depthwise_convs_and_by_stage_without():
    def shapes(model):
        return sorted({(id(m.warehouse), tuple(m.warehouse.shape)) for m in model.modules()
                       if isinstance(m, KWConv2d)}, key=lambda t: t[1])

    auto, kind = (create_model("mobilenetv2_100", "kernelwarehouse", **kw) for kw in ({}, {"sharing": "kind"}))
    assert [s for _, s in shapes(auto)] == [s for _, s in shapes(kind)]
    assert min(s[2] for _, s in shapes(auto)) == 1 < max(s[2] for _, s in shapes(auto))  # dw cells apart
    auto, stage = (create_model("resnet18", "kernelwarehouse", **kw) for kw in ({}, {"sharing": "stage"}))
    assert [s for _, s in shapes(auto)] == [s for _, s in shapes(stage)]


def test_temperature_goes_to_zero_over_the_anneal_fraction():
    model = create_model("cifar_resnet20", "kernelwarehouse", anneal_unit="fraction", anneal_fraction=0.2,
                         anneal_min_iters=0)
    layer = next(m for m in model.modules() if isinstance(m, KWConv2d))
    assert layer.temperature == 1.0
    set_progress(model, 0.1)
    assert layer.temperature == pytest.approx(0.5)
    set_progress(model, 0.5)
    assert layer.temperature == 0.0


def test_temperature_counts_epochs_as_the_release_with_an_iteration_floor():
    model = create_model("cifar_resnet20", "kernelwarehouse")  # 1 -> 0 over 20 epochs, >= 200 steps
    layer = next(m for m in model.modules() if isinstance(m, KWConv2d))
    set_progress(model, 0.5, iteration=50, iters_per_epoch=10, total_iters=100)  # 5 of 20 epochs
    assert layer.temperature == pytest.approx(0.75)
    set_progress(model, 1.0, iteration=250, iters_per_epoch=10, total_iters=250)
    assert layer.temperature == pytest.approx(0.0)
    set_progress(model, 0.5, iteration=100, iters_per_epoch=1, total_iters=200)  # 20 epochs = 20 steps < 200
    assert layer.temperature == pytest.approx(0.5)


def test_eval_output_of_a_sample_does_not_depend_on_its_batch():
    model = create_model("cifar_resnet20", "kernelwarehouse", num_classes=5, temperature=0.5).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[2:3], model(x[2:3]), rtol=1e-5, atol=1e-5)


def test_shared_warehouse_gets_gradients_from_every_member():
    model = create_model("cifar_resnet20", "kernelwarehouse", num_classes=5, temperature=0.5).train()
    layers = [m for m in model.modules() if isinstance(m, KWConv2d)]
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(m.warehouse.grad is not None and m.fc2.weight.grad.abs().sum() > 0 for m in layers)


def test_config_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid keys"):
        create_model("resnet18", "kernelwarehouse", num_kernels=4)
    with pytest.raises(ConfigError, match="sharing"):
        create_model("resnet18", "kernelwarehouse", sharing="network")
    with pytest.raises(ConfigError, match="do not tile"):
        create_model("resnet18", "kernelwarehouse", cell_inplane_ratio=0.3)
