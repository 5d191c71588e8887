"""Parameter counts (dynconv_bench/metrics/param_count.py): exact totals and categories."""

from __future__ import annotations

import torch
from torch import nn

import dynconv_bench
from dynconv_bench.metrics.param_count import (
    CATEGORIES,
    count_deployed_params,
    count_params,
    param_categories,
)


def _sum(modules) -> int:  # noqa: ANN001
    return sum(p.numel() for m in modules for p in m.parameters(recurse=False))


def test_static_resnet18_counts_by_category():
    model = dynconv_bench.create_model("resnet18", "static")
    counts = count_params(model)
    assert counts["total"] == counts["trainable"] == 11_689_512  # torchvision/timm ResNet18, 1000 classes
    assert counts["classifier"] == 512 * 1000 + 1000
    assert counts["conv"] == _sum(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert counts["norm"] == _sum(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert counts["attention"] == counts["modulation"] == counts["other"] == 0
    assert sum(counts[c] for c in CATEGORIES) == counts["total"]


def test_shared_tensors_count_once_and_frozen_ones_are_not_trainable():
    a = nn.Linear(10, 10)
    b = nn.Linear(10, 10)
    b.weight = a.weight  # tied weight
    model = nn.Sequential(a, b, a)  # and a module used twice
    counts = count_params(model)
    assert counts["total"] == 100 + 10 + 10
    a.bias.requires_grad_(False)
    assert count_params(model)["trainable"] == 110


def test_static_se_attention_is_exactly_the_se_parameters():
    static = count_params(dynconv_bench.create_model("cifar_resnet20", "static", num_classes=10))
    model = dynconv_bench.create_model("cifar_resnet20", "static-se", num_classes=10)
    counts = count_params(model)
    se = [model.get_submodule(n).se for n in model.dynconv_report.converted]
    assert counts["attention"] == sum(p.numel() for s in se for p in s.parameters())
    assert counts["conv"] == static["conv"] and counts["norm"] == static["norm"]
    assert counts["total"] == static["total"] + counts["attention"]


class _Bank(dynconv_bench.DynamicLayer, nn.Module):
    """A K-kernel layer: kernel bank + bias bank, a static modulation, a routing submodule."""

    in_channels, out_channels, kernel_size, stride, padding, dilation, groups = 4, 6, (3, 3), (1, 1), 1, (1, 1), 2

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3, 6, 2, 3, 3))
        self.bias = nn.Parameter(torch.zeros(3, 6))
        self.scale = nn.Parameter(torch.zeros(1, 1, 3, 3))
        self.route = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_dynamic_layer_parameters_split_into_conv_modulation_attention():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _Bank(), nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6, 2))
    cats = param_categories(model)
    assert cats["1.weight"] == cats["1.bias"] == "conv"
    assert cats["1.scale"] == "modulation"
    assert {cats[k] for k in ("1.route.0.weight", "1.route.0.bias", "1.route.1.weight")} == {"attention"}
    assert cats["2.weight"] == "norm" and cats["4.weight"] == "classifier" and cats["0.weight"] == "conv"
    counts = count_params(model)
    assert counts["conv"] == (3 * 4 + 4) + 3 * 6 * 2 * 9 + 18
    assert counts["attention"] == 15 + 6 and counts["modulation"] == 9


def test_layer_declared_categories_win():
    layer = _Bank()
    layer.param_categories = lambda: {"scale": "attention"}
    assert param_categories(nn.Sequential(layer))["0.scale"] == "attention"


def test_odconv_kernel_bank_is_conv_and_deployed_counts_are_reported():
    if "odconv" not in dynconv_bench.list_variants():
        return
    static = dynconv_bench.create_model("cifar_resnet20", "static", num_classes=10)
    model = dynconv_bench.create_model("cifar_resnet20", "odconv", num_classes=10, num_kernels=4)
    converted = model.dynconv_report.converted
    extra = 3 * sum(static.get_submodule(n).weight.numel() for n in converted)  # 4 kernels instead of 1
    counts = count_params(model)
    assert counts["conv"] == count_params(static)["conv"] + extra
    assert counts["attention"] == sum(p.numel() for n in converted
                                      for p in model.get_submodule(n).attention.parameters())
    assert count_deployed_params(model) == counts  # nothing static to fold


def test_kerneldna_deployed_form_folds_modulation():
    if "kerneldna" not in dynconv_bench.list_variants():
        return
    model = dynconv_bench.create_model("cifar_resnet20", "kerneldna", num_classes=10)
    counts, deployed = count_params(model), count_params(dynconv_bench.deploy(model))
    assert count_deployed_params(model) == deployed
    assert counts["modulation"] > 0 and deployed["modulation"] == 0
    # every child gets its own folded kernel: deployed conv = the static backbone's conv count
    static = count_params(dynconv_bench.create_model("cifar_resnet20", "static", num_classes=10))
    assert deployed["conv"] == static["conv"]
    assert counts["conv"] < static["conv"]
