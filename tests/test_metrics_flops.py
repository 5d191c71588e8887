"""MAC counting (dynconv_bench/metrics/flops.py, flop_handles.py): exact counts against hand-computed ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dynconv_bench
from dynconv_bench.metrics.flops import conv_macs_analytic, profile
from dynconv_bench.models.backbones import STANDARD_BACKBONES
from dynconv_bench.models.layers import ConvGeometry, ConvSpec

from .conftest import small_input_size

# The backbones whose full variant matrix is cheap enough for the default run; the rest are slow.
FAST_BACKBONES = {"cifar_resnet20"}


def _conv_output_hw(model: nn.Module, x: torch.Tensor) -> dict[str, list[tuple[int, int]]]:
    """Output sizes of every nn.Conv2d during one eager forward (independent of the profiler)."""
    out: dict[str, list[tuple[int, int]]] = {}
    hooks = [m.register_forward_hook(lambda mod, a, y, n=n: out.setdefault(n, []).append(tuple(y.shape[2:])))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return out


def _hand_conv_macs(conv: nn.Conv2d, hw: tuple[int, int]) -> int:
    kh, kw = conv.kernel_size
    return conv.out_channels * (conv.in_channels // conv.groups) * kh * kw * hw[0] * hw[1]


def test_static_resnet18_every_conv_matches_the_analytic_count():
    model = dynconv_bench.create_model("resnet18", "static")
    sizes = _conv_output_hw(model, torch.randn(1, 3, 224, 224))
    prof = profile(model, (3, 224, 224))
    rows = prof.breakdown.set_index("name")
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 20
    for name, conv in convs.items():
        assert rows.loc[name, "conv_macs"] == _hand_conv_macs(conv, sizes[name][0]), name
    assert prof.conv_macs == sum(_hand_conv_macs(c, sizes[n][0]) for n, c in convs.items()) == 1_813_561_344
    assert prof.overhead_macs == 0
    assert prof.unsupported == {}


def test_static_resnet18_is_1_82_gmacs():
    # Reference: 1.82 G MACs (torchvision / ODConv README 1.814G count only convs and the fc layer).
    # We also count BN (1/element), ReLU, max-pool, residual adds and pooling, +0.4%; tolerance 0.5%
    # around 1.82G covers that and the rounding of the published figure.
    prof = profile(dynconv_bench.create_model("resnet18", "static"), (3, 224, 224))
    assert prof.macs == pytest.approx(1.82e9, rel=0.005)
    assert prof.by_operator["_convolution"] + prof.by_operator["linear"] == 1_814_073_344
    assert prof.flops == 2 * prof.macs


def test_converted_model_conv_macs_equal_its_static_twin_and_overheads_add_up():
    torch.manual_seed(0)
    static = dynconv_bench.create_model("cifar_resnet20", "static", num_classes=10)
    se = dynconv_bench.create_model("cifar_resnet20", "static-se", num_classes=10, sites="all")
    sizes = _conv_output_hw(static, torch.randn(1, 3, 32, 32))
    p_static, p_se = profile(static, (3, 32, 32)), profile(se, (3, 32, 32))
    rows = p_se.breakdown.set_index("name")
    converted = se.dynconv_report.converted
    assert len(converted) == 18
    for name in converted:
        conv = static.get_submodule(name)
        assert rows.loc[name, "conv_macs"] == _hand_conv_macs(conv, sizes[name][0])
        # SE overhead by hand: GAP (C*H*W), reduce (C*h), BN (h), ReLU (h), expand (h*C), sigmoid (C),
        # the input scaling (C*H*W) where H, W are the layer's input size
        c, h = conv.in_channels, se.get_submodule(name).se.reduce.out_channels
        in_hw = sizes[name][0][0] * conv.stride[0] * sizes[name][0][1] * conv.stride[1]
        assert rows.loc[name, "overhead_macs"] == 2 * c * in_hw + c * h + 2 * h + h * c + c
    assert p_se.conv_macs == p_static.conv_macs
    assert p_se.macs == p_static.macs + p_se.overhead_macs
    dyn = p_se.breakdown[p_se.breakdown["dynamic"]]
    assert dyn["overhead_macs"].sum() == p_se.overhead_macs
    total = rows.loc["(total)"]
    assert (total["conv_macs"], total["overhead_macs"], total["macs"]) == (p_se.conv_macs, p_se.overhead_macs,
                                                                           p_se.macs)


class _PerSampleConv(ConvGeometry, dynconv_bench.DynamicLayer, nn.Module):
    """Per-sample kernels W_b = W * s_b run as one grouped conv with the batch folded into channels,
    plus a batch-shared kernel modulation W * (1 + S) computed once per forward."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.geometry = ConvSpec.from_conv(self.conv)
        self.mod = nn.Parameter(torch.zeros(1, 1, k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weight = self.conv.weight * (1 + self.mod)  # once per batch: O*C*k*k MACs
        s = x.mean((2, 3))  # per sample: C*H*W
        kernels = weight.unsqueeze(0) * s[:, None, :, None, None]  # per sample: O*C*k*k
        out = F.conv2d(x.reshape(1, b * c, h, w), kernels.reshape(-1, c, *self.conv.kernel_size),
                       padding=self.conv.padding, groups=b)
        return out.view(b, -1, h, w)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_per_sample_and_batch_shared_work_are_counted_per_image(batch_size):
    layer = _PerSampleConv(8, 16, 3)
    model = nn.Sequential(layer)
    prof = profile(model, (8, 10, 10), batch_size=batch_size)
    conv = 16 * 8 * 9 * 10 * 10
    per_sample = 8 * 10 * 10 + 16 * 8 * 9
    shared = 16 * 8 * 9 + 9  # the (1 + S) add and the product with the kernel
    assert prof.conv_macs == conv == conv_macs_analytic(layer, (10, 10))
    assert prof.overhead_macs == round(per_sample + shared / batch_size)
    assert prof.macs == prof.conv_macs + prof.overhead_macs
    assert prof.unsupported == {}


def test_ops_fvcore_ignores_are_counted_and_unknown_ops_are_reported():
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(x) + torch.sigmoid(x) * x  # 4 elementwise ops
            y = torch.softmax(y, dim=1).view(x.shape[0], -1)  # 1 op, view is free
            return torch.cumsum(y, dim=1)  # no handle: must be reported

    prof = profile(M(), (4, 5, 5), batch_size=2)
    assert prof.macs == 5 * 100
    assert prof.by_operator == {"relu": 100, "sigmoid": 100, "mul": 100, "add": 100, "softmax": 100}
    assert prof.unsupported == {"aten::cumsum": 1}


def test_unfold_is_a_free_copy():  # ODConv's column path (late layers of small inputs) unfolds its input
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.unfold(x, 3, padding=1)

    prof = profile(M(), (4, 5, 5), batch_size=2)
    assert prof.unsupported == {} and prof.macs == 0


def test_pooling_and_batchnorm_conventions():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1))
    prof = profile(model, (4, 8, 8), batch_size=3)
    assert prof.by_operator == {"batch_norm": 4 * 64, "max_pool2d": 9 * 4 * 16, "avg_pool2d": 4 * 4 * 4,
                                "adaptive_avg_pool2d": 4 * 4}


def test_profile_leaves_training_mode_and_reports_json():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    prof = profile(model, (3, 8, 8))
    assert model.training and all(m.training for m in model.modules())
    d = prof.to_dict()
    assert d["macs"] == prof.macs and d["flops"] == 2 * prof.macs and d["params"] == 3 * 4 * 9 + 4 + 8
    assert d["breakdown"][-1]["name"] == "(total)"
    with pytest.raises(ValueError, match="batch_size"):
        profile(model, (3, 8, 8), batch_size=0)


def test_deployed_params_are_those_of_the_deployed_model():
    static = dynconv_bench.create_model("cifar_resnet8", "static", num_classes=10)
    assert profile(static, (3, 32, 32)).deployed_params == sum(p.numel() for p in static.parameters())
    if "kerneldna" in dynconv_bench.list_variants():
        model = dynconv_bench.create_model("cifar_resnet8", "kerneldna", num_classes=10)
        deployed = dynconv_bench.deploy(model)
        prof = profile(model, (3, 32, 32))
        assert prof.deployed_params == sum(p.numel() for p in deployed.parameters()) != prof.params
        # folding removes the batch-shared modulation work and nothing else
        assert profile(deployed, (3, 32, 32)).conv_macs == prof.conv_macs


def test_dynconv_bench_profile_delegates():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False))
    assert dynconv_bench.profile(model, (3, 4, 4)).macs == 3 * 4 * 16


def _matrix() -> list:
    cases = []
    for backbone in STANDARD_BACKBONES:
        for variant in dynconv_bench.list_variants():
            marks = [] if backbone in FAST_BACKBONES else [pytest.mark.slow]
            cases.append(pytest.param(backbone, variant, marks=marks, id=f"{backbone}-{variant}"))
    return cases


@pytest.mark.parametrize(("backbone", "variant"), _matrix())
def test_unsupported_op_list_is_empty_for_every_builtin_variant_and_backbone(backbone, variant):
    model = dynconv_bench.create_model(backbone, variant, num_classes=10)
    prof = profile(model, small_input_size(backbone))
    assert prof.unsupported == {}
    assert prof.macs > prof.conv_macs > 0
    converted = set(model.dynconv_report.converted)
    assert set(prof.breakdown.loc[prof.breakdown["dynamic"], "name"]) >= converted


ODCONV_README_MADDS = {1: 1.838e9, 4: 1.916e9}  # ResNet18 ODConv 1x / 4x, official README (reference values)


@pytest.mark.parametrize("num_kernels", [1, 4])
def test_odconv_resnet18_within_2_percent_of_the_readme(num_kernels):
    if "odconv" not in dynconv_bench.list_variants():
        pytest.skip("the odconv variant is not registered yet")
    model = dynconv_bench.create_model("resnet18", "odconv", num_kernels=num_kernels)
    # batch 1: ODConv has no batch-shared work, and batch 1 runs a plain conv (fast on CPU)
    prof = profile(model, (3, 224, 224), batch_size=1)
    assert prof.unsupported == {}
    assert prof.conv_macs == 1_813_561_344
    assert prof.macs == pytest.approx(ODCONV_README_MADDS[num_kernels], rel=0.02)


def test_macs_count_the_path_eager_runs_not_the_export_path(monkeypatch) -> None:  # noqa: ANN001
    """fvcore traces the model; ODConv must still take its eager (column) path there, as it does when run."""
    from dynconv_bench_variants.odconv import ODConv2d

    layer = ODConv2d(torch.nn.Conv2d(8, 64, 3, padding=1), num_kernels=1, min_channels=4)
    model = torch.nn.Sequential(layer, torch.nn.AdaptiveAvgPool2d(1)).eval()
    taken = []
    real = ODConv2d._conv_columns
    monkeypatch.setattr(ODConv2d, "_conv_columns", lambda self, *a: taken.append(1) or real(self, *a))
    with torch.no_grad():
        model(torch.randn(2, 8, 4, 4))  # eager at batch 2: 64 outputs >= 2 x 16 positions -> columns
    assert taken == [1]
    profile(model, input_size=(8, 4, 4), batch_size=2)
    assert len(taken) >= 2  # the counted forward took the same path
