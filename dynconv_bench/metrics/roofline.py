"""A calibrated cost model of a model's whole inference forward on a GPU: predicted times, never measurements.

Every op of the forward (`gpu_cost.trace_forward`: convs, BatchNorm, activations, pooling, elementwise ops, the
attention branches' matmuls, reductions and softmaxes, autocast's casts, copies between memory formats) costs

    max(bytes / (bandwidth x memory), FLOPs / (peak x compute fraction of its precision)) + kernel_us

on the GPU (peaks and bandwidth from the data sheets, `gpu_cost.GPUS`), and `host_us` on the host in eager mode.
An eager forward takes max(GPU sum, host sum) (launches are asynchronous); a CUDA-graph replay the GPU sum. Each
per-sample conv takes the strategy with the least predicted time among those the tuner weighs there (output_space
only without spatial attention, as `per_sample_conv` requires). The ratio to static is static's predicted time
over the variant's, in the same precision, batch and memory format.

The five constants (`FITTED`) are fitted by `scripts/cost_model_fit.py` (least squares on the ratio to static)
to the ResNet-18 rows of the 2026-11-26 H200 measurements; no constant is per variant. The fused path (today's
Triton kernel, and the candidate designs of metrics/fused_designs.py) uses the same constants: no fused kernel was
ever measured, so its predictions are the least certain (see docs/fused-kernels.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .fused_designs import DESIGNS, NEW_DESIGNS
from .gpu_cost import GPU, GPUS, Op, Trace, trace_forward

__all__ = ["FITTED", "FITTED_ON", "GPUS", "GPU", "STRATEGIES", "Constants", "Prediction", "forward_time", "op_time",
           "predict_model"]

STRATEGIES = ("grouped", "loop", "bmm", "output_space", "fused")


@dataclass(frozen=True)
class Constants:
    """What a GPU achieves of its data-sheet figures, and what each kernel costs besides its work."""

    tensor_tf32: float  # fraction of the TF32 tensor-core peak convs and matmuls reach in fp32 runs (also CUDA cores')
    tensor_half: float  # fraction of the bf16/fp16 tensor-core peak they reach in half-precision runs
    memory: float  # fraction of HBM bandwidth memory-bound kernels reach
    kernel_us: float  # GPU time per kernel besides its work (launch latency, ramp-up, tail), microseconds
    host_us: float  # host time per kernel-launching op in eager mode (Python, dispatch, launch), microseconds

    def as_tuple(self) -> tuple[float, ...]:
        return (self.tensor_tf32, self.tensor_half, self.memory, self.kernel_us, self.host_us)


# Fitted 2026-12-07 by scripts/cost_model_fit.py on the 23 ResNet-18 paired speed rows of
# shared/measured/h200-2026-11-26/paired_gpu.jsonl (8 variants x fp32 b1, fp32 b128; 7 x bf16 channels_last b128;
# the releases' own code and the one row of a whole other architecture left out): mean absolute error of the ratio 0.041, the
# per-row table in docs/fused-kernels.md. Least squares on the ratio from (0.30, 0.30, 0.70, 3, 20).
FITTED = Constants(tensor_tf32=0.2443, tensor_half=0.2526, memory=0.5543, kernel_us=9.863, host_us=29.49)
FITTED_ON = "2026-11-26 H200 measurements, ResNet-18 paired speed rows (23), fitted 2026-12-07"


def op_time(op: Op, gpu: GPU, c: Constants = FITTED) -> float:
    """Predicted GPU seconds of one op (0 for an op that launches no kernel)."""
    if not op.kernel:
        return 0.0
    rate = {"tf32": gpu.tf32 * c.tensor_tf32, "half": gpu.half * c.tensor_half, "fp32": gpu.fp32 * c.tensor_tf32}
    compute = (op.flops / rate[op.compute] + op.cuda_flops / rate["fp32"]) / op.occupancy
    return max(compute, op.bytes / (gpu.bandwidth * c.memory)) + c.kernel_us * 1e-6


class _Arrays:
    """An op list as arrays (per op: FLOPs per compute class, CUDA-core FLOPs, bytes, occupancy, kernel or not)."""

    def __init__(self, ops: list[Op]) -> None:
        ops = [o for o in ops if o.kernel]
        self.n = len(ops)
        cls = np.array([{"tf32": 0, "half": 1, "fp32": 2}[o.compute] for o in ops], dtype=int)
        self.flops = np.zeros((3, self.n))
        self.flops[cls, np.arange(self.n)] = [o.flops for o in ops]
        self.cuda = np.array([o.cuda_flops for o in ops])
        self.bytes = np.array([o.bytes for o in ops])
        self.occupancy = np.array([o.occupancy for o in ops])

    def times(self, gpu: GPU, c: Constants, mode: str) -> tuple[float, float]:
        """(GPU seconds, host seconds) of these ops."""
        if not self.n:
            return 0.0, 0.0
        rate = np.array([gpu.tf32 * c.tensor_tf32, gpu.half * c.tensor_half, gpu.fp32 * c.tensor_tf32])
        compute = ((self.flops / rate[:, None]).sum(0) + self.cuda / rate[2]) / self.occupancy
        t = np.maximum(compute, self.bytes / (gpu.bandwidth * c.memory)) + c.kernel_us * 1e-6
        return float(t.sum()), 0.0 if mode == "graph" else self.n * c.host_us * 1e-6


@dataclass
class _Compiled:
    fixed: _Arrays
    choices: list[dict[str, _Arrays]] = field(default_factory=list)


def _compile(trace: Trace) -> _Compiled:
    fixed = [x for x in trace.items if isinstance(x, Op)]
    return _Compiled(_Arrays(fixed), [{s: _Arrays(ops) for s, ops in x.options.items()} for x in trace.choices])


def forward_time(trace: Trace | _Compiled, gpu: GPU, c: Constants = FITTED, mode: str = "eager",
                 force: str | None = None, among: tuple[str, ...] | None = None) -> tuple[float, Counter]:
    """Predicted seconds of one forward and the strategy (or fused design) each per-sample conv takes: the
    cheapest (of `among`, if given), or `force` where it applies there. `mode`: 'eager' (max of the GPU and host
    sums) or 'graph' (the GPU sum)."""
    comp = trace if isinstance(trace, _Compiled) else _compile(trace)
    gpu_s, host_s = comp.fixed.times(gpu, c, mode)
    picks: Counter = Counter()
    for options in comp.choices:
        times = {s: a.times(gpu, c, mode) for s, a in options.items() if among is None or s in among or s == force}
        best = force if force in times else min(times, key=lambda s: max(times[s]))
        picks[best] += 1
        gpu_s, host_s = gpu_s + times[best][0], host_s + times[best][1]
    return max(gpu_s, host_s), picks


@dataclass(frozen=True)
class Prediction:
    """Predicted forward times (seconds) of static and of the variant per strategy; ratios to static (> 1: faster)."""

    gpu: GPU
    batch: int
    dtype: str
    channels_last: bool
    mode: str
    static_s: float
    times: dict[str, float]  # 'unfused' (cheapest per call), each strategy forced where it applies, 'fused'
    picks: dict[str, int]  # the strategy each per-sample conv takes in 'unfused'
    designs: dict[str, float] = field(default_factory=dict)  # fused designs forced (fused_designs.DESIGNS)

    def total_s(self, strategy: str) -> float:
        return self.times[strategy]

    def ratio(self, strategy: str) -> float:
        return self.static_s / self.times[strategy]


_TRACES: dict[tuple, _Compiled] = {}


def compiled_trace(backbone: str, variant: str, cfg: dict | None, batch: int, dtype: str, channels_last: bool,
                   input_size: int, fused: bool = False, gpu: GPU = GPUS["h200"]) -> _Compiled:
    """The traced forward (kept in memory: a trace takes seconds, a prediction from it microseconds). `fused`:
    the fused path forced, each call a choice between the designs of fused_designs.DESIGNS for `gpu`."""
    key = (backbone, variant, tuple(sorted((cfg or {}).items())), batch, dtype, channels_last, input_size, fused,
           gpu if fused else None)
    if key not in _TRACES:
        _TRACES[key] = _compile(trace_forward(backbone, variant, cfg, batch, dtype, channels_last, input_size,
                                              DESIGNS if fused else None, gpu))
    return _TRACES[key]


def predict_model(backbone: str, variant: str, cfg: dict | None = None, gpu: str = "h200", batch: int = 128,
                  dtype: str = "fp32", input_size: int = 224, channels_last: bool | None = None, mode: str = "eager",
                  fused: bool = True, constants: Constants = FITTED) -> Prediction:
    """The prediction for a backbone converted with a variant (its deployed form, as the speed kind times it).

    `channels_last` defaults to the measurements' setting: on for bf16/fp16, off for fp32. `fused`: also predict
    today's fused Triton path (every fusable per-sample conv forced to it) as 'fused', and in `designs` each
    design of fused_designs.DESIGNS forced, and 'best_new' (the cheapest new design per call).
    """
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; valid: {', '.join(GPUS)}")
    if mode not in ("eager", "graph"):
        raise ValueError(f"unknown mode {mode!r}; valid: eager, graph")
    g = GPUS[gpu]
    cl = dtype != "fp32" if channels_last is None else channels_last
    args = (batch, dtype, cl, input_size)
    static, _ = forward_time(compiled_trace(backbone, "static", {}, *args), g, constants, mode)
    trace = compiled_trace(backbone, variant, cfg, *args)
    unfused, picks = forward_time(trace, g, constants, mode)
    times = {"unfused": unfused}
    for s in STRATEGIES[:-1]:
        if any(s in options for options in trace.choices):
            times[s] = forward_time(trace, g, constants, mode, force=s)[0]
    designs = {}
    if fused:
        ft = compiled_trace(backbone, variant, cfg, *args, fused=True, gpu=g)
        designs = {d: forward_time(ft, g, constants, mode, force=d)[0] for d in DESIGNS}
        designs["best_new"] = forward_time(ft, g, constants, mode, among=NEW_DESIGNS)[0]
        times["fused"] = designs["today"]
    return Prediction(g, batch, dtype, cl, mode, static, times, dict(picks), designs)
