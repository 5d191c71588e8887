"""Every GPU kernel of a model's inference forward, with its FLOPs and bytes: the input of the roofline model.

`trace_forward` runs the deployed model once on fake CUDA tensors (torch's FakeTensorMode: shapes, dtypes and
strides only; no GPU, nothing computed) under a TorchDispatchMode that records each aten op with its operands.
Each op becomes an `Op` by explicit formulas (`op_of`):

- convolution: FLOPs 2 x N x C_out x H_out x W_out x (C_in / groups) x kh x kw; bytes x + weight + y (+ bias);
- mm / addmm / bmm / baddbmm: FLOPs 2 x batch x M x N x K; bytes: both operands (and the added term) + output;
- batch norm (inference): bytes x + y + the four per-channel vectors; 2 FLOPs per element;
- every other op that launches a kernel (activations, pooling, reductions, softmax, elementwise, copies): bytes
  of every tensor operand read plus every output written; 1 FLOP per output element (memory-bound);
- views, `empty`, `prim.device` and other metadata ops launch no kernel: no bytes, no FLOPs (`KERNEL` False)
  but they still cost host time in eager mode.

bf16 runs emulate CUDA autocast (fake tensors carry no autocast key; `_Autocast`): the conv and matmul operands in
fp32 are cast to bf16 first (one `_to_copy` kernel each, a parameter once per forward, as autocast caches leaf
casts), softmax and the other fp32-list ops cast bf16 operands up.

Per-sample convs: while tracing, `per_sample_conv`'s strategy runner is wrapped so every call records the ops of
each strategy the tuner would weigh (`Choice`): `loop` only at batch 1, as `_choose` does; else grouped, loop,
bmm, and output_space only where `_output_space_fits` (a mixture without spatial attention, as `per_sample_conv`
requires). The cost model picks the cheapest per call, as the tuner picks the fastest. `fused` (a dict of fused
designs, metrics/fused_designs.py) traces the fused path instead: every Triton launch becomes a Choice between the
designs' `Op`s for its `ConvProblem`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..models.triton_tiles import ConvProblem

__all__ = ["GPU", "GPUS", "Choice", "Op", "Trace", "batch_norm_op", "conv_op", "matmul_op", "memory_op",
           "op_of", "record_ops", "trace_forward"]


ELEMENT = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2, torch.float64: 8, torch.int64: 8,
           torch.int32: 4, torch.bool: 1, torch.uint8: 1, torch.int8: 1}
# ops that launch no kernel: metadata, views, allocation
FREE = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
        "select", "slice", "split", "split_with_sizes", "unbind", "chunk", "as_strided", "as_strided_", "alias",
        "detach", "device", "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh",
        "_reshape_alias", "unfold_view", "sym_size", "sym_stride", "is_same_size", "_local_scalar_dense"}
# CUDA autocast's lists (the Python functions and Tensor methods that reach them): cast to the half dtype / to fp32
AUTOCAST_LOWER = {"conv1d", "conv2d", "conv3d", "conv_transpose2d", "linear", "matmul", "__matmul__", "__rmatmul__",
                  "mm", "bmm", "addmm", "baddbmm", "addbmm", "mv", "einsum", "prelu"}
AUTOCAST_UPPER = {"softmax", "log_softmax", "exp", "log", "pow", "rsqrt", "sum", "prod", "cumsum", "layer_norm",
                  "group_norm", "norm"}
LOOP_MAX_BATCH = 16  # beyond, `loop` (B launches per layer) is not traced: B fixed costs per conv never win
BATCH_NORM = {"cudnn_batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training",
              "_native_batch_norm_legit", "batch_norm"}


@dataclass(frozen=True)
class GPU:
    """Dense peaks (no structured sparsity) in FLOP/s, HBM bandwidth in bytes/s, and the SM count."""

    name: str
    fp32: float  # CUDA cores (FMA = 2 FLOPs)
    tf32: float  # tensor cores
    half: float  # tensor cores, bf16/fp16 with fp32 accumulation
    bandwidth: float
    sms: int


T = 1e12
# Vendors' public data sheets; the sheets print tensor figures "with sparsity", halved here to dense:
# H100 SXM5 and H200 SXM: NVIDIA H100 / H200 Tensor Core GPU datasheets (FP32 67 TF, TF32 989 TF sparse,
#   BF16/FP16 1979 TF sparse; HBM3 3.35 TB/s, HBM3e 4.8 TB/s; 132 SMs per the Hopper architecture whitepaper).
# A100 SXM 80GB: NVIDIA A100 datasheet (FP32 19.5 TF, TF32 156 TF dense, BF16/FP16 312 TF dense, 2,039 GB/s;
#   108 SMs per the Ampere GA100 whitepaper).
# L4: NVIDIA L4 datasheet (FP32 30.3 TF, TF32 120 TF sparse, BF16/FP16 242 TF sparse, 300 GB/s; 58 SMs per the
#   Ada Lovelace architecture whitepaper).
GPUS = {
    "h100": GPU("H100 SXM", 67 * T, 989 / 2 * T, 1979 / 2 * T, 3.35e12, 132),
    "h200": GPU("H200 SXM", 67 * T, 989 / 2 * T, 1979 / 2 * T, 4.8e12, 132),
    "a100": GPU("A100 SXM 80GB", 19.5 * T, 156 * T, 312 * T, 2.039e12, 108),
    "l4": GPU("L4", 30.3 * T, 120 / 2 * T, 242 / 2 * T, 0.3e12, 58),
}


@dataclass(frozen=True)
class Op:
    """One aten op: `kind` 'conv' (tensor cores unless depthwise), 'gemm', 'memory', 'fused' or 'free' (no kernel).

    `flops`: FLOPs on the compute units of `compute` ('tf32', 'half', 'fp32' CUDA cores); `cuda_flops`: FLOPs that
    run on CUDA cores beside them (the fused kernel's weight mixing); `bytes`: to and from HBM.
    """

    name: str
    kind: str
    flops: float = 0.0
    bytes: float = 0.0
    compute: str = "fp32"
    cuda_flops: float = 0.0
    grouped: bool = False  # a conv with groups > 1 and more than one input channel per group
    occupancy: float = 1.0  # share of the SMs the fused kernel's grid keeps busy (wave quantisation)

    @property
    def kernel(self) -> bool:
        return self.kind != "free"


@dataclass
class Choice:
    """One per-sample conv call: the ops of each strategy that applies there."""

    options: dict[str, list[Op]]


@dataclass
class Trace:
    """The forward's items in order (an Op, or a Choice between strategies) and what it was traced as."""

    items: list = field(default_factory=list)
    batch: int = 1
    dtype: str = "fp32"
    channels_last: bool = False

    def ops(self, picks: list[str] | None = None) -> Iterator[Op]:
        """Every op, with each Choice resolved to `picks[i]` (default: the first option)."""
        i = 0
        for item in self.items:
            if isinstance(item, Op):
                yield item
            else:
                yield from item.options[picks[i] if picks else next(iter(item.options))]
                i += 1

    @property
    def choices(self) -> list[Choice]:
        return [x for x in self.items if isinstance(x, Choice)]


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# -- explicit formulas ---------------------------------------------------------------------------------------
def conv_op(n: int, cin: int, cout: int, groups: int, kernel: tuple[int, int], in_size: tuple[int, int],
            out_size: tuple[int, int], element: int, compute: str, bias: bool = False) -> Op:
    """A convolution: 2 FLOPs per MAC over N x C_out x H_out x W_out x (C_in/g) x kh x kw; x, weight, y (bias) once.

    Depthwise (one input channel per group) runs on CUDA cores ('fp32' compute) at any dtype.
    """
    kh, kw = kernel
    macs = n * cout * out_size[0] * out_size[1] * (cin // groups) * kh * kw
    x, w, y = n * cin * in_size[0] * in_size[1], cout * (cin // groups) * kh * kw, n * cout * out_size[0] * out_size[1]
    depthwise = cin // groups == 1 and groups > 1
    return Op("convolution", "conv", 2.0 * macs, element * (x + w + y + (cout if bias else 0)),
              "fp32" if depthwise else compute, grouped=groups > 1 and not depthwise)


def matmul_op(batch: int, m: int, n: int, k: int, element: int, compute: str, add: int = 0, name: str = "mm") -> Op:
    """(batch x) an (M, K) @ (K, N) product: 2 x batch x M x N x K FLOPs; both operands, an added term of `add`
    elements and the (M, N) output each moved once."""
    return Op(name, "gemm", 2.0 * batch * m * n * k, element * (batch * (m * k + k * n + m * n) + add), compute)


def batch_norm_op(numel: int, channels: int, element: int) -> Op:
    """Inference batch norm: read x, write y, read mean, var, weight, bias (fp32); 2 FLOPs per element."""
    return Op("batch_norm", "memory", 2.0 * numel, element * 2 * numel + 4 * 4 * channels)


def memory_op(name: str, read: float, written: float, out_numel: int) -> Op:
    """A kernel whose time is its traffic: `read` + `written` bytes, one FLOP per output element."""
    return Op(name, "memory", float(out_numel), float(read + written))


def op_of(name: str, args: tuple, out: object, compute: str) -> Op:
    """The Op of one recorded aten op (`name` without namespace and overload), from its operands and outputs."""
    if name in FREE:
        return Op(name, "free")
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
    if name in ("convolution", "_convolution", "cudnn_convolution"):
        x, w = args[0], args[1]
        y = outs[0]
        groups = args[8] if name == "convolution" else args[-1] if isinstance(args[-1], int) else 1
        return conv_op(x.shape[0], x.shape[1], w.shape[0], groups, tuple(w.shape[2:]), tuple(x.shape[2:]),
                       tuple(y.shape[2:]), x.element_size(), compute, bias=len(args) > 2 and args[2] is not None)
    if name in ("mm", "addmm", "bmm", "baddbmm"):
        a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
        add = args[0].numel() if name in ("addmm", "baddbmm") else 0
        batch = a.shape[0] if a.dim() == 3 else 1
        return matmul_op(batch, a.shape[-2], b.shape[-1], a.shape[-1], a.element_size(), compute, add, name)
    if name in BATCH_NORM:
        x = args[0]
        return batch_norm_op(x.numel(), x.shape[1], x.element_size())
    if name in ("empty", "zeros", "ones", "full", "zero_", "fill_", "new_zeros", "new_ones", "new_full", "arange",
                "scalar_tensor", "randn", "rand"):
        return memory_op(name, 0, sum(o.numel() * o.element_size() for o in outs), sum(o.numel() for o in outs))
    read = sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1 or t.dim() > 0)
    written = sum(o.numel() * o.element_size() for o in outs)
    if name.endswith("_") and outs and tensors and outs[0] is tensors[0]:
        written = outs[0].numel() * outs[0].element_size()  # in place: read and written once
    return memory_op(name, read, written, sum(o.numel() for o in outs))


# -- the recorder --------------------------------------------------------------------------------------------
class _Autocast(TorchFunctionMode):
    """CUDA autocast for fake tensors (they carry no autocast key): fp32 operands of convs and matmuls are cast to
    `amp` first, half operands of softmax and the other fp32-list ops up to fp32; a parameter once per forward
    (autocast caches leaf casts inside its region). Each cast dispatches `_to_copy`, which the recorder sees."""

    def __init__(self, amp: torch.dtype) -> None:
        super().__init__()
        self.amp, self.cache = amp, {}

    def _cast(self, a: object, frm: torch.dtype, to: torch.dtype) -> object:
        if not isinstance(a, torch.Tensor) or a.dtype != frm:
            return a
        if isinstance(a, torch.nn.Parameter):
            if id(a) not in self.cache:
                self.cache[id(a)] = (a, a.to(to))  # holding a: its id is not reused meanwhile
            return self.cache[id(a)][1]
        return a.to(to)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in AUTOCAST_LOWER:
            args = tuple(self._cast(a, torch.float32, self.amp) for a in args)
            kwargs = {k: self._cast(v, torch.float32, self.amp) for k, v in kwargs.items()}
        elif name in AUTOCAST_UPPER:
            args = tuple(self._cast(a, self.amp, torch.float32) for a in args)
        return func(*args, **kwargs)


class _Recorder(TorchDispatchMode):
    """Appends an Op per aten op to the innermost open list."""

    def __init__(self, conv_compute: str, mm_compute: str) -> None:
        super().__init__()
        self.conv_compute, self.mm_compute = conv_compute, mm_compute
        self.stack: list[list] = [[]]
        self.muted = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        out = func(*args, **kwargs)
        if not self.muted:
            compute = self.conv_compute if name in ("convolution", "_convolution") else self.mm_compute
            self.stack[-1].append(op_of(name, args, out, compute))
        return out

    @contextlib.contextmanager
    def sub(self) -> Iterator[list]:
        self.stack.append([])
        try:
            yield self.stack[-1]
        finally:
            self.stack.pop()


def _computes(dtype: str) -> tuple[str, str]:
    """Compute class of convs (cuDNN) and of matmuls (cuBLAS) for a run in `dtype` with PyTorch's default switches."""
    if dtype != "fp32":
        return "half", "half"
    return ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32"), \
        ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")


def _to_fake(model: torch.nn.Module, mode: object) -> None:
    """Replace every parameter and buffer by a fake CUDA tensor of its shape, dtype and strides (in place: the
    model's own `_apply` would swap tensors that other objects hold weak references to)."""
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for key, t in store.items():
                if t is not None:
                    fake = mode.from_tensor(t.detach()).to("cuda")
                    store[key] = torch.nn.Parameter(fake, t.requires_grad) if store is module._parameters else fake


@contextlib.contextmanager
def _patched(module: object, name: str, value: object) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def record_ops(fn, *inputs: torch.Tensor, dtype: str = "fp32") -> list[Op]:  # noqa: ANN001
    """The Ops of `fn(*inputs)` (a module or function of CPU tensors; its parameters too), run on fake CUDA tensors:
    what the cost model charges for them. bf16/fp16 emulate autocast as `trace_forward` does."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    conv_c, mm_c = _computes(dtype)
    rec = _Recorder(conv_c, mm_c)
    amp = None if dtype == "fp32" else {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.device("cuda"):
        if isinstance(fn, torch.nn.Module):
            _to_fake(fn, mode)
        fakes = [mode.from_tensor(t).to("cuda") for t in inputs]
        with torch.no_grad(), rec, _Autocast(amp) if amp is not None else contextlib.nullcontext():
            fn(*fakes)
    return [o for o in rec.stack[0] if isinstance(o, Op)]


def trace_forward(backbone: str, variant: str, cfg: dict | None = None, batch: int = 128, dtype: str = "fp32",
                  channels_last: bool = False, input_size: int = 224,
                  fused: dict[str, Callable[[ConvProblem, GPU], list[Op]]] | None = None,
                  gpu: GPU = GPUS["h200"]) -> Trace:
    """The ops of one inference forward of the deployed model, as the speed measurement runs it on CUDA.

    `fused`: with the fused strategy forced, each Triton launch a Choice between these designs' ops
    (`design(problem, gpu)`, e.g. fused_designs.DESIGNS); else the eager path of the 2026-11-26 measurements (no
    lazy kernels handed to the tuner) with every per-sample
    conv a Choice of the strategies the tuner weighs there.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ..models import per_sample_conv as psc
    from ..models import triton_conv as tc
    from ..models.convert import create_model, deploy
    from ..models.per_sample_conv import use_strategy

    conv_c, mm_c = _computes(dtype)
    amp = None if dtype == "fp32" else {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    rec = _Recorder(conv_c, mm_c)
    trace = Trace(batch=batch, dtype=dtype, channels_last=channels_last)
    original_run, original_launch, original_prepared = psc._run, tc._launch, tc.prepared

    def run(strategy, x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
        if fused:
            return original_run(strategy, x, weight, bias, stride, padding, dilation, groups)
        names = ["loop"] if x.shape[0] == 1 else [
            s for s in ("grouped", "loop", "bmm", "output_space") if (s != "output_space" or psc._output_space_fits(weight))
            and (s != "loop" or x.shape[0] <= LOOP_MAX_BATCH)]
        options, out = {}, None
        for s in names:
            with rec.sub() as ops:
                y = original_run(s, x, weight, bias, stride, padding, dilation, groups)
            options[s] = ops
            out = y if out is None else out
        rec.stack[-1].append(Choice(options))
        return out

    def launch(x, *args, **kwargs):  # noqa: ANN001, ANN202
        plans = tc._PLANS[-1]
        before = len(plans)
        with rec.sub():  # the zeros collect_problems returns stand for the kernel's output: no kernel of their own
            out = original_launch(x, *args, **kwargs)
        for p in plans[before:]:
            p = dataclasses.replace(p, in_size=tuple(x.shape[2:]) if p.in_size == (0, 0) else p.in_size)
            if not (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):  # NCHW -> NHWC copy
                e = x.element_size()
                rec.stack[-1].append(memory_op("_to_nhwc", e * x.numel(), e * x.numel(), x.numel()))
            rec.stack[-1].append(Choice({name: design(p, gpu) for name, design in fused.items()}))
        return out

    def prepared(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rec.muted += 1  # the bank re-laid once per parameter version, not per forward
        try:
            return original_prepared(*args, **kwargs)
        finally:
            rec.muted -= 1

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = deploy(create_model(backbone, variant, num_classes=1000, **(cfg or {}))).eval()
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.device("cuda"):
        _to_fake(model, mode)
        x = torch.empty(batch, 3, input_size, input_size).contiguous(memory_format=fmt)
        patches = [_patched(psc, "_run", run)]
        if fused:
            patches += [_patched(tc, "_launch", launch), _patched(tc, "prepared", prepared)]
            strategy, plans = use_strategy("fused"), tc.collect_problems()
        else:  # the measured commit's eager path: no lazy kernel description handed to the tuner
            patches.append(_patched(tc, "available", lambda device: False))
            strategy, plans = use_strategy("grouped"), contextlib.nullcontext()
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            stack.enter_context(strategy)
            stack.enter_context(plans)
            stack.enter_context(torch.no_grad())
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
            stack.enter_context(rec)
            if amp is not None:
                stack.enter_context(_Autocast(amp))
            model(x)
    trace.items = rec.stack[0]
    return trace
