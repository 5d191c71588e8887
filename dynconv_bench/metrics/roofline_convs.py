"""The first roofline model (conv layers only, every kernel at its peak): kept for scripts/fused_check.py.

Uncalibrated and contradicted by the 2026-11-26 H200 measurements (it counts only convs, no BatchNorm, activations,
attention ops or launches, and precision changes nothing but peaks and bytes). `dynconv_bench.metrics.roofline`
holds the calibrated whole-forward model; use `predict_model` there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..models.triton_tiles import ConvProblem, choose_tiles
from .gpu_cost import GPU

__all__ = ["LayerPrediction", "Prediction", "predict", "static_conv_problems"]

STRATEGIES = ("grouped", "bmm", "output_space", "own", "fused")
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class Cost:
    """Work of one kernel sequence: tensor-core FLOPs (at a precision), CUDA-core FLOPs, bytes to and from HBM."""

    tensor: float = 0.0
    precision: str = "tf32"  # of `tensor`: 'tf32', 'half' or 'fp32' (then on CUDA cores too)
    cuda: float = 0.0
    bytes: float = 0.0
    efficiency: float = 1.0  # the share of the SMs the launch keeps busy (fused kernel's wave quantisation)

    def time(self, gpu: GPU) -> float:
        peak = {"tf32": gpu.tf32, "half": gpu.half, "fp32": gpu.fp32}[self.precision]
        compute = (self.tensor / peak + self.cuda / gpu.fp32) / self.efficiency
        return max(compute, self.bytes / gpu.bandwidth)


def time_sum(costs: list[Cost], gpu: GPU) -> float:
    """Kernels run one after another: their times add."""
    return sum(c.time(gpu) for c in costs)


@dataclass(frozen=True)
class LayerPrediction:
    """Predicted seconds of one converted layer: static conv and each strategy that applies (None: does not)."""

    problem: ConvProblem
    static_s: float
    strategies: dict[str, float | None]

    @property
    def unfused_s(self) -> float:
        """The best of the unfused strategies, as the tuner would pick."""
        return min(t for s, t in self.strategies.items() if s != "fused" and t is not None)


@dataclass(frozen=True)
class Prediction:
    """A model's predicted conv time on a GPU: static, best unfused, fused; ratios to static (> 1: faster)."""

    gpu: GPU
    batch: int
    dtype: str
    layers: list[LayerPrediction]
    static_other_s: float  # convs left static in the variant (and in static)

    @property
    def static_s(self) -> float:
        return self.static_other_s + sum(x.static_s for x in self.layers)

    def total_s(self, strategy: str) -> float:
        """Model conv time with every converted layer on `strategy` ('unfused' = best unfused per layer)."""
        return self.static_other_s + sum(
            x.unfused_s if strategy == "unfused" else (x.strategies[strategy] if x.strategies[strategy] is not None
                                                       else x.unfused_s) for x in self.layers)

    def ratio(self, strategy: str) -> float:
        return self.static_s / self.total_s(strategy)


def _precisions(dtype: str, cudnn_tf32: bool, matmul_tf32: bool) -> tuple[str, str]:
    """Compute class of cuDNN convs and of torch matmuls (cuBLAS) for a run in `dtype`."""
    if dtype != "fp32":
        return "half", "half"
    return ("tf32" if cudnn_tf32 else "fp32"), ("tf32" if matmul_tf32 else "fp32")


def _sizes(p: ConvProblem) -> tuple[float, float, float, float]:
    """Elements of x, y, one kernel W, and the conv's FLOPs (2 per MAC), for the whole batch."""
    b, (ho, wo), (hi, wi) = p.batch, p.out_size, p.in_size
    w = p.cout * (p.cin // p.groups) * p.kernel[0] * p.kernel[1]
    return b * p.cin * hi * wi, b * p.cout * ho * wo, w, 2.0 * b * ho * wo * w


def _static(p: ConvProblem, conv_prec: str) -> Cost:
    x, y, w, flops = _sizes(p)
    e = BYTES[p.dtype]
    depthwise = p.groups > 1 and p.groups == p.cin
    return Cost(0 if depthwise else flops, conv_prec, flops if depthwise else 0, e * (x + y + w))


def _layer_costs(p: ConvProblem, conv_prec: str, mm_prec: str, sms: int) -> dict[str, list[Cost] | None]:
    x, y, w, flops = _sizes(p)
    e, b = BYTES[p.dtype], p.batch
    depthwise = p.groups > 1 and p.groups == p.cin
    attention = Cost(bytes=e * x)  # the attention branch's global average pool reads x once
    n = p.num_cells if p.mode == 1 else p.num_k
    # per-sample kernels in memory: aggregate (B, n) x (n, W) -> B kernels written, then read by the conv
    aggregate = Cost(2.0 * b * n * w, mm_prec, bytes=e * (n * w + b * w))
    scales = []
    if p.has_channel:
        scales.append(Cost(bytes=2 * e * x))
    if p.has_filter:
        scales.append(Cost(bytes=2 * e * y))
    shared = p.mode == 0 and p.num_k == 1 and not p.rank
    per_sample_conv = Cost(0 if depthwise else flops, conv_prec, flops if depthwise else 0, e * (x + y + b * w))
    out: dict[str, list[Cost] | None] = dict.fromkeys(STRATEGIES)
    if p.rank:  # a low-rank residual (rank > 0): its own unfused path (scaled static conv + Q, Phi, P convs), and the fused kernel
        lr = 2.0 * b * p.out_size[0] * p.out_size[1] * p.rank * (p.cin + p.cout)
        z = b * p.rank * p.out_size[0] * p.out_size[1]
        out["own"] = [attention, _static(p, conv_prec), Cost(bytes=2 * e * y),  # Lambda scale
                      Cost(lr, conv_prec, bytes=e * (x + 4 * z + 2 * y))]  # Q^T x, Phi z, P z added to y
    elif shared:  # SE-style scale of x then the one conv (output_space is exactly this)
        out["output_space"] = [attention, *scales, _static(p, conv_prec)]
    else:
        out["grouped"] = [attention, aggregate, *scales, per_sample_conv]
        cols = b * p.cin * p.kernel[0] * p.kernel[1] * p.out_size[0] * p.out_size[1]
        out["bmm"] = [attention, aggregate, *scales, Cost(bytes=e * (x + 2 * cols)),  # im2col written and read
                      Cost(flops, mm_prec, bytes=e * (b * w + y))]
        if p.mode == 0 and not p.has_spatial:  # K kernels stacked along C_out, then the weighted sum over K
            out["output_space"] = [attention, *scales, Cost(p.num_k * flops, conv_prec,
                                                            bytes=e * (x + p.num_k * w + 2 * p.num_k * y)),
                                   Cost(2.0 * p.num_k * y, "fp32", bytes=e * (p.num_k * y + y))]
    out["fused"] = [attention, _fused(p, sms)]
    return out


def _fused(p: ConvProblem, sms: int) -> Cost:
    """The fused kernel: padded tiles on tensor cores, weight tiles mixed on CUDA cores once per row tile."""
    t = choose_tiles(p, sms)
    x, y, w, _ = _sizes(p)
    e = BYTES[p.dtype]
    ho, wo = p.out_size
    m_tiles, n_tiles = -(-ho * wo // t.bm), -(-(p.cout // p.groups) // t.bn)
    reduction = -(-(p.cin // p.groups) // t.bk) * t.bk * p.kernel[0] * p.kernel[1]
    tensor = 2.0 * p.batch * p.groups * m_tiles * t.bm * n_tiles * t.bn * reduction
    if p.rank:
        tensor += 2.0 * p.batch * m_tiles * t.bm * p.rank * (p.cin + p.cout)
    n = p.num_cells if p.mode == 1 else p.num_k
    mixing = 2.0 * p.batch * m_tiles * n * w  # every row tile rebuilds its weight tiles (fp32 FMAs)
    ctas = p.batch * m_tiles * n_tiles * p.groups * t.splits
    waves = -(-ctas // sms)
    prec = "half" if p.dtype != "fp32" else p.precision if p.precision == "tf32" else "fp32"
    split_bytes = 2 * 4 * y * t.splits if t.splits > 1 else 0  # fp32 slices written, then summed
    return Cost(tensor, prec, mixing, e * (x + y + n * w) + split_bytes, ctas / (waves * sms))


def predict(problems: list[ConvProblem], static_convs: list[ConvProblem], gpu: GPU, batch: int = 128,
            dtype: str = "fp32", cudnn_tf32: bool = True, matmul_tf32: bool = False) -> Prediction:
    """Predicted conv times of a model whose converted layers are `problems` (as `collect_problems` records
    them) and whose static form has the convs `static_convs`, at `batch` in `dtype` with PyTorch's TF32 switches."""
    conv_prec, mm_prec = _precisions(dtype, cudnn_tf32, matmul_tf32)
    fused_prec = "tf32" if dtype == "fp32" and cudnn_tf32 else "ieee"
    layers = []
    for p in problems:
        p = dataclasses.replace(p, batch=batch, dtype=dtype, precision=fused_prec)
        costs = _layer_costs(p, conv_prec, mm_prec, gpu.sms)
        layers.append(LayerPrediction(p, _static(p, conv_prec).time(gpu),
                                      {s: None if c is None else time_sum(c, gpu) for s, c in costs.items()}))
    static_all = sum(_static(dataclasses.replace(p, batch=batch, dtype=dtype), conv_prec).time(gpu)
                     for p in static_convs)
    converted = sum(x.static_s for x in layers)
    return Prediction(gpu, batch, dtype, layers, max(static_all - converted, 0.0))


def static_conv_problems(model: nn.Module, input_size: tuple[int, int, int]) -> list[ConvProblem]:
    """Every nn.Conv2d of a (static) model as a ConvProblem at batch 1, shapes from one forward."""
    found: list[ConvProblem] = []

    def hook(m: nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        found.append(ConvProblem(1, m.in_channels, m.out_channels, m.groups, tuple(m.kernel_size),
                                 tuple(out.shape[2:]), in_size=tuple(x.shape[2:])))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, *input_size))
    finally:
        for h in handles:
            h.remove()
    return found
