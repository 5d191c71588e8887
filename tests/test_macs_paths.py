"""MACs of every execution path of every variant, against counts computed by hand from what the path does.

For each path: the layer's conv MACs equal those of the static conv at its geometry (exact), and its overhead is
non-negative and equals an independent count of the path's work (attention, kernel aggregation, scalings, extra
convs). Conventions of `flop_handles`: one multiply-add = 1; an elementwise op, activation or softmax 1 per output
element; a reduction or global pooling 1 per input element; eval BatchNorm 1 per element; a conv's or linear's
bias rides on its multiply-adds; views, copies, padding and unfold are free. A path that silently drops work (an
uncounted matmul, an unsupported op) fails here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from dynconv_bench.metrics.flops import profile
from dynconv_bench.models.per_sample_conv import STRATEGIES, conv_output_size

dyconv = pytest.importorskip("dynconv_bench_variants.dyconv")
condconv = pytest.importorskip("dynconv_bench_variants.condconv")
odconv = pytest.importorskip("dynconv_bench_variants.odconv")
kerneldna = pytest.importorskip("dynconv_bench_variants.kerneldna")
kernelwarehouse = pytest.importorskip("dynconv_bench_variants.kernelwarehouse")
dcd = pytest.importorskip("dynconv_bench_variants.dcd")


@dataclass(frozen=True)
class Geo:
    """A conv and the input it sees: the numbers the hand counts are made of."""

    cin: int
    cout: int
    k: int
    stride: int = 1
    padding: int = 1
    groups: int = 1
    bias: bool = False
    hw: int = 6  # input height = width
    batch: int = 2

    def conv(self) -> nn.Conv2d:
        return nn.Conv2d(self.cin, self.cout, self.k, self.stride, self.padding, groups=self.groups, bias=self.bias)

    @property
    def hw_in(self) -> int:
        return self.hw * self.hw

    @property
    def hw_out(self) -> int:
        h, w = conv_output_size(self.hw, self.hw, (self.k, self.k), (self.stride,) * 2, (self.padding,) * 2, (1, 1))
        return h * w

    @property
    def kernel(self) -> int:
        """Numbers in one kernel (C_out * C_in/groups * k * k)."""
        return self.cout * self.cin // self.groups * self.k * self.k

    @property
    def conv_macs(self) -> int:
        return self.kernel * self.hw_out


GEOS = {
    "k3-bias": Geo(8, 12, 3, bias=True),
    "k3-s2-g4": Geo(8, 12, 3, stride=2, groups=4),
    "k1-bias": Geo(8, 16, 1, padding=0, bias=True, batch=3),
}


def _matrix(names: tuple[str, ...], cases: list[tuple], default: set[tuple]) -> pytest.MarkDecorator:
    """Parametrize over `cases`; those not in `default` run in the slow tier (the default run stays quick)."""
    params = [pytest.param(*c, id="-".join(map(str, c)), marks=[] if c in default else [pytest.mark.slow])
              for c in cases]
    return pytest.mark.parametrize(names, params)


def _count(layer: nn.Module, geo: Geo, strategy: str = "grouped") -> tuple[int, int]:
    """(conv MACs, overhead MACs) per image of `layer` alone, as the profiler counts them."""
    prof = profile(nn.Sequential(layer), (geo.cin, geo.hw, geo.hw), batch_size=geo.batch, strategy=strategy)
    assert prof.unsupported == {}
    assert prof.macs == prof.conv_macs + prof.overhead_macs  # nothing outside the layer
    return prof.conv_macs, prof.overhead_macs


@functools.cache
def _static_conv_macs(geo: Geo) -> int:
    prof = profile(nn.Sequential(geo.conv()), (geo.cin, geo.hw, geo.hw), batch_size=geo.batch)
    assert prof.conv_macs == prof.macs == geo.conv_macs  # the static twin, counted the same way
    return prof.conv_macs


def _assert_path(layer: nn.Module, geo: Geo, strategy: str, expected_overhead: float) -> None:
    conv, overhead = _count(layer, geo, strategy)
    assert conv == _static_conv_macs(geo)
    assert overhead >= 0
    assert overhead == round(expected_overhead)


def _per_sample_conv_extra(geo: Geo, strategy: str, bias: bool, num_kernels: int, mixture: bool) -> int:
    """What a per-sample conv strategy runs beyond one conv's MACs: output_space (mixture only) convolves with the
    K kernels and sums them (K x C_out per position); bmm and output_space add the bias as a separate op."""
    extra = 0
    if strategy == "output_space" and mixture:
        extra += (num_kernels - 1) * geo.conv_macs + num_kernels * geo.cout * geo.hw_out
    if bias and strategy in ("bmm", "output_space"):
        extra += geo.cout * geo.hw_out
    return extra


# -- CondConv and DyConv: a kernel mixture through each per-sample strategy ----------------------------------
def _mixture_work(geo: Geo, k: int, strategy: str) -> int:
    """Aggregating the sample's kernel (and bias) from K, then the strategy's own extra work."""
    if strategy == "output_space":  # never builds the per-sample kernel; the bias is still mixed
        aggregation = k * geo.cout if geo.bias else 0
    else:
        aggregation = k * geo.kernel + (k * geo.cout if geo.bias else 0)
    return aggregation + _per_sample_conv_extra(geo, strategy, geo.bias, k, mixture=True)


# default run: every strategy with a bias, output_space (its sum per group) and grouped on a grouped conv
MIXTURE_CASES = [(g, s) for g in GEOS for s in STRATEGIES]
MIXTURE_DEFAULT = {("k3-bias", s) for s in STRATEGIES} | {("k3-s2-g4", "output_space"), ("k3-s2-g4", "grouped")}


@_matrix(("geo_id", "strategy"), MIXTURE_CASES, MIXTURE_DEFAULT)
def test_condconv_every_strategy(geo_id: str, strategy: str) -> None:
    geo, k = GEOS[geo_id], 3
    layer = condconv.CondConv2d(geo.conv(), num_kernels=k)
    routing = geo.cin * geo.hw_in + geo.cin * k + k  # GAP, linear, sigmoid
    _assert_path(layer, geo, strategy, routing + _mixture_work(geo, k, strategy))


def test_condconv_block_follower_pays_no_routing() -> None:
    geo = GEOS["k3-bias"]
    leader = condconv.CondConv2d(geo.conv(), num_kernels=3)
    follower = condconv.CondConv2d(nn.Conv2d(12, 12, 3, padding=1, bias=True), num_kernels=3, routing_from=leader)
    prof = profile(nn.Sequential(leader, follower), (geo.cin, geo.hw, geo.hw), batch_size=2)
    rows = prof.breakdown.set_index("name")
    assert prof.unsupported == {}
    assert rows.loc["1", "overhead_macs"] == 3 * 12 * 12 * 9 + 3 * 12  # the mixture alone, no routing


@_matrix(("geo_id", "strategy"), MIXTURE_CASES, MIXTURE_DEFAULT)
def test_dyconv_every_strategy(geo_id: str, strategy: str) -> None:
    geo, k = GEOS[geo_id], 4
    layer = dyconv.DyConv2d(geo.conv(), num_kernels=k, reduction=4, temperature=5.0)
    hidden = geo.cin // 4
    attention = geo.cin * geo.hw_in + geo.cin * hidden + hidden + hidden * k + 2 * k  # GAP, fc, relu, fc, /tau, softmax
    _assert_path(layer, geo, strategy, attention + _mixture_work(geo, k, strategy))


# -- ODConv: attention on the columns, on the kernel, or on the feature maps ---------------------------------
def _odconv_attention(geo: Geo, k: int, hidden: int) -> int:
    """GAP, fc, BN, ReLU, then each head: linear, / temperature, sigmoid (softmax for the kernel head)."""
    depthwise = geo.groups == geo.cin == geo.cout
    heads = [geo.cin] + ([] if depthwise else [geo.cout]) + ([] if geo.k == 1 else [geo.k * geo.k])
    heads += [k] if k > 1 else []
    return geo.cin * geo.hw_in + geo.cin * hidden + 2 * hidden + sum(hidden * n + 2 * n for n in heads)


def _odconv_layer(geo: Geo, k: int, path: str, monkeypatch: pytest.MonkeyPatch) -> odconv.ODConv2d:
    layer = odconv.ODConv2d(geo.conv(), num_kernels=k, min_channels=4, temperature=3.0)
    monkeypatch.setattr(layer, "_cheaper_on_columns", lambda x: path == "columns")
    monkeypatch.setattr(layer, "_cheaper_on_kernel", lambda x: path == "kernel")
    return layer


def _odconv_expected(geo: Geo, k: int, path: str, strategy: str) -> int:
    spatial, filt = geo.k > 1, not (geo.groups == geo.cin == geo.cout)
    cin_g, kk = geo.cin // geo.groups, geo.k * geo.k
    work = k * geo.kernel if k > 1 else 0  # the sample's kernel from the K (columns: the bmm's kernels)
    work += k * geo.cout if geo.bias and k > 1 else 0  # its bias
    maps_tail = (geo.cout * geo.hw_out if filt else 0) + (geo.cout * geo.hw_out if geo.bias else 0)
    if path == "columns":  # channel x spatial on the unfolded input (C*k*k per position), one GEMM or bmm
        return work + geo.cin * kk + geo.cin * kk * geo.hw_out + maps_tail
    if path == "kernel":  # filter x channel (and spatial) folded into the sample's kernel, bias in the conv
        work += (geo.cout * cin_g if filt else 0) + (geo.cout * cin_g * kk if spatial else 0) + geo.kernel
        return work + _per_sample_conv_extra(geo, strategy, geo.bias, k, mixture=False)
    # maps: channel attention on the input, spatial on the sample's kernel, filter and bias on the output
    work += geo.cin * geo.hw_in + (geo.kernel if spatial else 0)
    return work + maps_tail


# ODConv also skips its filter head on depthwise convs, and at batch 1 a shared kernel is per-sample too
ODCONV_GEOS = {**GEOS, "dw3": Geo(8, 8, 3, groups=8), "k1-b1": Geo(8, 16, 1, padding=0, bias=True, batch=1)}
ODCONV_PATHS = [("columns", "k3-bias", 1), ("columns", "k3-bias", 4), ("kernel", "k3-bias", 1),
                ("kernel", "k3-s2-g4", 4), ("kernel", "k1-bias", 4), ("kernel", "dw3", 4), ("kernel", "k1-b1", 1),
                ("maps", "k3-bias", 1), ("maps", "k3-s2-g4", 4), ("maps", "k1-bias", 4), ("maps", "dw3", 1),
                ("maps", "k1-b1", 1)]


# default run: every path with one grouped conv per batch, and bmm (its bias op) where a per-sample conv has a bias
ODCONV_CASES = [(*p, s) for p in ODCONV_PATHS for s in ("grouped", "loop", "bmm")]
ODCONV_DEFAULT = {(*p, "grouped") for p in ODCONV_PATHS} | {("kernel", "k3-bias", 1, "bmm"), ("kernel", "k1-b1", 1, "bmm")}


@_matrix(("path", "geo_id", "k", "strategy"), ODCONV_CASES, ODCONV_DEFAULT)
def test_odconv_every_path(path: str, geo_id: str, k: int, strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    geo = ODCONV_GEOS[geo_id]
    layer = _odconv_layer(geo, k, path, monkeypatch)
    expected = _odconv_attention(geo, k, layer.attention.fc.out_channels) + _odconv_expected(geo, k, path, strategy)
    _assert_path(layer, geo, strategy, expected)


def test_odconv_static_kernel_path_runs_one_plain_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1x1 kernel, K = 1, batch > 1: nothing per-sample in the kernel, so channel and filter attention on the maps
    geo = GEOS["k1-bias"]
    layer = _odconv_layer(geo, 1, "maps", monkeypatch)
    attention = _odconv_attention(geo, 1, layer.attention.fc.out_channels)
    _assert_path(layer, geo, "grouped", attention + geo.cin * geo.hw_in + 2 * geo.cout * geo.hw_out)


@pytest.mark.parametrize("k", [1, 4])
def test_odconv_late_stage_counts_every_sample_of_its_gemm(k: int) -> None:
    # issue 19 bug 5: (C_out, D) @ (B, D, L) was counted once, not B times, so ODConv 1x came out below static
    geo = Geo(8, 64, 3, hw=4)  # 64 outputs >= 2 x 16 positions: the columns path, chosen by the layer itself
    layer = odconv.ODConv2d(geo.conv(), num_kernels=k, min_channels=4)
    assert layer._cheaper_on_columns(torch.empty(geo.batch, geo.cin, geo.hw, geo.hw))
    expected = _odconv_attention(geo, k, 4) + _odconv_expected(geo, k, "columns", "grouped")
    _assert_path(layer, geo, "grouped", expected)


# -- KernelWarehouse: cells mixed into the sample's kernel, then a per-sample conv ---------------------------
@_matrix(("tau", "strategy"), [(t, s) for t in (1.0, 0.0) for s in STRATEGIES], {(1.0, "grouped"), (0.0, "bmm")})
def test_kernelwarehouse_every_strategy(tau: float, strategy: str) -> None:
    geo = GEOS["k3-bias"]
    co, ci = 4, 8
    m = 9 * (geo.cout // co) * (geo.cin // ci)  # mixtures: one per cell of the kernel
    cells = m  # a warehouse of this layer alone, cell_num_ratio 1
    warehouse = nn.Parameter(torch.randn(cells, co, ci))
    layer = kernelwarehouse.KWConv2d(geo.conv(), warehouse, 0, cell_num_ratio=1.0, min_channels=4, temperature=tau)
    logits = m * (cells + 1)
    attention = geo.cin * geo.hw_in + geo.cin * 4 + 4 + 4 + 4 * logits  # GAP, fc1, BN, ReLU, fc2
    attention += logits + logits + m + logits  # |a|, its sum, + 1e-3, a / that
    if tau:  # (1 - tau) * a + tau * beta: the product with beta is the same for every sample
        attention += 2 * logits + logits / geo.batch
    assembly = m * cells * co * ci  # each cell of the kernel from the n cells of the warehouse
    tail = geo.cout * geo.hw_out  # the bias, added after the conv
    extra = _per_sample_conv_extra(geo, strategy, False, 1, mixture=False)
    _assert_path(layer, geo, strategy, attention + assembly + extra + tail)


# -- DCD, KernelDNA, static-se: one dense conv plus their extra work ------------------------------------------
@pytest.mark.parametrize("geo_id", ["k3-bias", "k3-s2-g4"])
def test_dcd(geo_id: str) -> None:
    geo = GEOS[geo_id]
    layer = dcd.DCDConv2d(geo.conv(), latent=3, reduction=4, min_channels=4)
    s, lat, out = layer.fc.out_features, 3, geo.cout * geo.hw_out
    dynamics = geo.cin * geo.hw_in + geo.cin * s + s * s + 2 * s + s * lat * lat + s * geo.cout + geo.cout
    residual = geo.cin * lat * geo.hw_out + lat * lat * geo.hw_out + lat * geo.cout * geo.hw_out + out  # Q, Phi, P, +
    scaling = out + (out if geo.bias else 0)  # Lambda on the output, then the bias
    _assert_path(layer, geo, "grouped", dynamics + residual + scaling)


@pytest.mark.parametrize(("spatial", "filt", "se"), [(True, True, True), (False, True, True), (True, False, False)])
def test_kerneldna_child(spatial: bool, filt: bool, se: bool) -> None:
    geo = GEOS["k3-bias"]
    layer = kerneldna.KernelDNAConv(geo.conv(), spatial=spatial, filter=filt, se=se, reduction=4)
    hidden = geo.cin // 4
    work = 0.0
    if se:  # GAP, reduce, BN, ReLU, expand, sigmoid, the input scaling
        work += geo.cin * geo.hw_in + geo.cin * hidden + 2 * hidden + hidden * geo.cin + geo.cin + geo.cin * geo.hw_in
    # the static modulation is folded once per batch: (1 + S) and its product, (1 + F) and its product
    shared = (9 + geo.kernel if spatial else 0) + (geo.cout + geo.kernel if filt else 0)
    _assert_path(layer, geo, "grouped", work + shared / geo.batch)


def test_static_se_layer() -> None:
    from dynconv_bench_variants._se import SEConv

    geo = GEOS["k3-s2-g4"]
    layer = SEConv(geo.conv(), reduction=4)
    hidden = geo.cin // 4
    se = geo.cin * geo.hw_in + geo.cin * hidden + 2 * hidden + hidden * geo.cin + geo.cin + geo.cin * geo.hw_in
    _assert_path(layer, geo, "grouped", se)


def test_profile_rejects_an_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="valid: grouped, loop, bmm, output_space"):
        profile(nn.Sequential(nn.Conv2d(3, 4, 1)), (3, 4, 4), strategy="auto")


def _odconv_path_taken(layer: odconv.ODConv2d, x: torch.Tensor) -> str:
    """The path ODConv2d.forward takes on `x` (eager), from the layer's own decisions."""
    spatial, many = layer.attention.spatial_fc is not None, layer.num_kernels > 1
    if spatial and x.shape[0] > 1 and layer._cheaper_on_columns(x):
        return "columns"
    per_sample = many or spatial or x.shape[0] == 1
    return "kernel" if per_sample and layer._cheaper_on_kernel(x) else "maps"


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 4])
def test_odconv_resnet18_every_layer_counts_the_path_it_takes(k: int) -> None:
    # issue 19 bug 5: ODConv 1x counted 1,626M MACs, fewer than static's 1,821M
    import dynconv_bench

    static = profile(dynconv_bench.create_model("resnet18", "static"))
    model = dynconv_bench.create_model("resnet18", "odconv", num_kernels=k)
    prof = profile(model)
    assert prof.unsupported == {}
    assert prof.conv_macs == static.conv_macs and prof.macs == static.macs + prof.overhead_macs
    shapes: dict[str, tuple] = {}
    layers = {n: model.get_submodule(n) for n in model.dynconv_report.converted}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: shapes.__setitem__(n, tuple(a[0].shape)))
             for n, m in layers.items()]
    with torch.no_grad():
        model.eval()(torch.randn(prof.batch_size, 3, 224, 224))
    for h in hooks:
        h.remove()
    rows = prof.breakdown.set_index("name")
    paths, total = [], 0
    for name, layer in layers.items():
        b, c, h, w = shapes[name]
        geo = Geo(c, layer.out_channels, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.groups,
                  layer.bias is not None, hw=h, batch=b)
        path = _odconv_path_taken(layer, torch.empty(shapes[name]))
        expected = (_odconv_attention(geo, k, layer.attention.fc.out_channels)
                    + _odconv_expected(geo, k, path, "grouped"))
        assert rows.loc[name, "overhead_macs"] == expected, (name, path)
        paths.append(path)
        total += expected
    assert prof.overhead_macs == total
    assert paths.count("columns") == 4  # layer4's 3x3 convs: 512 outputs >= 2 x 49 positions
