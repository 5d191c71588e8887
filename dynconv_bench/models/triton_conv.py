"""Fused per-sample dynamic conv in Triton: an implicit-GEMM NHWC conv whose weight tiles are mixed on the fly.

Each program computes an output tile of (rows of one sample's H_out*W_out, C_out/groups columns of one group),
reducing over (kh, kw, C_in/groups). Its weight tile is built in registers from the sample's attention, so no
per-sample kernel is ever written to memory:

- mixture: sum_k a_bk W_k (or one shared W), times optional per-sample spatial (per tap) and
  in-channel scales; the out-channel scale multiplies the accumulator, then the mixed bias is added;
- cells (a kernel warehouse): each (out, in, tap) element sums the warehouse cells with the attention row of the
  cell it lies in (per-element gather: any tile size, any cell shape);
- low rank (dynamic decomposition): diag(lambda) W0 plus P Phi Q^T on the centre tap, computed as x Q then (P Phi)^T per tile;
  dense convs only (the low-rank residual is dense across groups, a grouped reduction never sees the other groups).

Forward only: the strategy is never chosen when autograd needs a gradient (see `runnable`). fp32 runs the dots
in TF32 on CUDA when cuDNN may use TF32 (models/tf32.conv_tf32: the switch static's cuDNN conv follows);
bf16/fp16 tiles accumulate in fp32. On CPU the kernels run only under TRITON_INTERPRET=1 (the jitted kernel is
built on first use for the current mode). The kernel itself is in triton_kernel.py, its tiles in triton_tiles.py.

The banks are re-laid out for the kernel (C_out contiguous, in the compute dtype) once per parameter version:
the copy is kept beside the parameter (a weak-keyed cache, freed with it) and rebuilt when the parameter's
version counter, storage, dtype or device changes (an optimizer step, load_state_dict, .to()). Writes through
`param.data` bypass the version counter: call `release_prepared()` after them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from .conv_modes import capturing_graph, conv_output_size, forced_strategy
from .conv_spec import _reversed_twice
from .mixtures import CellMixture, KernelMixture
from .tf32 import conv_tf32, matmul_tf32
from .triton_tiles import ConvProblem, Target, choose_tiles, lowrank_width, target_from_properties

try:
    import triton
except ImportError:  # CPU-only torch builds: the strategy is simply never a candidate
    triton = None

__all__ = ["available", "collect_problems", "dot_precision", "dot_precisions", "fused_conv", "lowrank_conv",
           "prefers_fused", "prepared", "ready", "release_prepared", "runnable"]

_HALF = (torch.float16, torch.bfloat16)
_PLANS: list[list[ConvProblem]] = []  # open collect_problems() blocks


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def available(device: torch.device) -> bool:
    """Triton can run a kernel on `device`: CUDA, or CPU under the interpreter."""
    if triton is None:
        return False
    if _PLANS:
        return True
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def ready(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """Whether a fused kernel may run on x with these operands: a capable device, no autograd, no graph capture."""
    return available(x.device) and x.dim() == 4 and x.dtype in (torch.float32, *_HALF) and not capturing_graph() \
        and not _needs_grad(x, *tensors)


def runnable(x: torch.Tensor, weight: object, groups: int) -> bool:
    """Whether the fused kernel can compute this per-sample conv (lazy kernels, forward only, a capable device)."""
    if isinstance(weight, KernelMixture):
        parts = (weight.attention, weight.bank, weight.bias_bank, weight.channel, weight.filter, weight.spatial)
    elif isinstance(weight, CellMixture):
        parts = (weight.attention, weight.cells)
    else:
        return False  # per-sample kernels already in memory: nothing left to fuse
    return ready(x, *parts)


def prefers_fused(x: torch.Tensor) -> bool:
    """Whether a layer should hand its lazy kernel description to `per_sample_conv` rather than take its own path.

    Only without autograd (the fused kernel has no backward), and when 'fused' is forced or the strategy is
    tuned ('auto') on CUDA: the tuner then measures the fused kernel against the other strategies.
    """
    if torch.is_grad_enabled() or not ready(x):
        return False
    forced = forced_strategy()
    return forced == "fused" or (forced is None and x.device.type == "cuda")


# -- host side ----------------------------------------------------------------------------------------------
_PREPARED: WeakTensorKeyDictionary = WeakTensorKeyDictionary()  # parameter -> {view and form: (version, copy)}
_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@contextlib.contextmanager
def collect_problems() -> Iterator[list[ConvProblem]]:
    """Record the fused calls run inside the block as `ConvProblem`s instead of launching them (on any device).

    Each call returns zeros of the right shape, so a model's forward under `use_strategy("fused")` and no_grad
    lists every configuration the launcher would pick (the AOT compile test and the roofline read these).
    """
    rec: list[ConvProblem] = []
    _PLANS.append(rec)
    try:
        yield rec
    finally:
        _PLANS.remove(rec)


def release_prepared() -> None:
    """Drop every prepared (re-laid-out) bank; the next fused call rebuilds what it needs."""
    for key in list(_PREPARED.keys()):
        _PREPARED.pop(key, None)


def _bank_layout(bank: torch.Tensor) -> torch.Tensor:
    return bank.permute(0, 3, 4, 2, 1)  # (K, C_out, C_in/g, kh, kw) -> (K, kh, kw, C_in/g, C_out)


def _conv_layout(weight: torch.Tensor) -> torch.Tensor:
    return weight.unsqueeze(0).permute(0, 3, 4, 2, 1)  # a dense conv's weight as a one-kernel bank


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _as_is(t: torch.Tensor) -> torch.Tensor:
    return t


def prepared(src: torch.Tensor, dtype: torch.dtype, layout: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """layout(src) contiguous in `dtype`, built once per version of the parameter src is (a view of) and reused."""
    owner = src if src._base is None else src._base
    try:
        state = (src._version, src.data_ptr(), src.device)
    except RuntimeError:  # an inference tensor has no version counter: nothing tells a change, so no cache
        return layout(src).to(dtype).contiguous()
    view = (tuple(src.shape), src.stride(), src.storage_offset(), dtype, layout.__name__)
    entries = _PREPARED.get(owner)
    if entries is None:
        entries = _PREPARED[owner] = {}
    hit = entries.get(view)
    if hit is not None and hit[0] == state:
        return hit[1]
    out = layout(src).to(dtype).contiguous()
    entries[view] = (state, out)
    return out


def _geometry(x: torch.Tensor, kernel: tuple[int, int], stride, padding, dilation):  # noqa: ANN001, ANN202
    if isinstance(padding, str):  # 'same'/'valid': the top/left amounts place the taps, the totals size the output
        left, right, top, bottom = _reversed_twice(padding, kernel, dilation)
    else:
        top = bottom = padding[0]
        left = right = padding[1]
    h_out, w_out = conv_output_size(x.shape[2] + top + bottom, x.shape[3] + left + right, kernel, stride,
                                    (0, 0), dilation)
    return (top, left), (h_out, w_out)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    if torch.is_autocast_enabled(dev):  # the dense conv under autocast runs in the autocast dtype: so do we
        return torch.get_autocast_dtype(dev)
    return x.dtype


def dot_precision(device: torch.device, dtype: torch.dtype) -> str:
    """fp32 dots in TF32 exactly when the static baseline's cuDNN conv may use TF32 (conv_tf32(), CUDA)."""
    tf32 = dtype == torch.float32 and device.type == "cuda" and conv_tf32()
    return "tf32" if tf32 else "ieee"


def dot_precisions(device: str, amp: str | None = None) -> dict[str, str]:
    """The arithmetic each side runs in now: cuDNN convs (static and the grouped/loop strategies), the fused
    kernel's dots, and torch matmuls (the bmm/output_space strategies): 'tf32', 'fp32', 'bf16' or 'fp16'."""
    if amp:
        return {"conv": amp, "fused": amp, "matmul": amp}
    cuda = str(device).startswith("cuda")
    conv = "tf32" if cuda and conv_tf32() else "fp32"
    return {"conv": conv, "fused": conv if cuda else "fp32",
            "matmul": "tf32" if cuda and matmul_tf32() else "fp32"}


@functools.lru_cache(maxsize=8)
def _sms(device: torch.device) -> int | None:
    """Multiprocessors of a CUDA device (None on CPU: the interpreter runs one program at a time, never split)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else None


@functools.lru_cache(maxsize=8)
def _target(device: torch.device) -> Target | None:
    """The limits (shared memory, registers) of a CUDA device the tiles must fit (None on CPU: any known GPU's)."""
    return target_from_properties(torch.cuda.get_device_properties(device)) if device.type == "cuda" else None


def _launch(x: torch.Tensor, kernel: tuple[int, int], cout: int, groups: int, stride, padding, dilation,  # noqa: ANN001
            mode: int, att: torch.Tensor, bank: torch.Tensor, *, num_k: int = 1, bias=None, channel=None,  # noqa: ANN001
            filt=None, spatial=None, cells=(1, 1, 1, 1, 0), q=None, r=None) -> torch.Tensor:  # noqa: ANN001
    dtype = _compute_dtype(x)
    (top, left), (h_out, w_out) = _geometry(x, kernel, stride, padding, dilation)
    b, cin, h, w = x.shape
    problem = ConvProblem(b, cin, cout, groups, tuple(kernel), (h_out, w_out), mode, num_k, cells[4],
                          bias is not None, channel is not None, filt is not None, spatial is not None,
                          0 if q is None else q.shape[1], _DTYPES[dtype], dot_precision(x.device, dtype), (h, w))
    if _PLANS:
        for rec in _PLANS:
            rec.append(problem)
        return torch.zeros(b, h_out, w_out, cout, device=x.device, dtype=dtype).permute(0, 3, 1, 2)
    tiles = choose_tiles(problem, _sms(x.device), _target(x.device))
    xh = x.to(dtype).permute(0, 2, 3, 1).contiguous()  # NHWC: free when x is channels_last already
    positions, cout_g = h_out * w_out, cout // groups
    if tiles.splits > 1:  # one fp32 slice per split, added below in a fixed order
        out = torch.empty(tiles.splits, b, h_out, w_out, cout, device=x.device, dtype=torch.float32)
    else:
        out = torch.empty(b, h_out, w_out, cout, device=x.device, dtype=dtype)
    split_iters = -(-problem.iterations // tiles.splits)

    def f32(t: torch.Tensor | None) -> torch.Tensor:
        return att if t is None else t.float().contiguous()

    grid = (b * triton.cdiv(positions, tiles.bm), triton.cdiv(cout_g, tiles.bn), groups * tiles.splits)
    _kernel(interpreting())[grid](
        xh, out, f32(att), bank, f32(bias), f32(channel), f32(filt), f32(spatial), f32(q), f32(r),
        h, w, cin, h_out, w_out, cout, cin // groups, cout_g, cells[4],
        stride[0], stride[1], top, left, dilation[0], dilation[1], *cells[:4],
        0 if q is None else q.shape[1], groups, split_iters, out[0].numel() if tiles.splits > 1 else 0,
        KH=kernel[0], KW=kernel[1], MODE=mode, NUM_K=num_k, HAS_BIAS=bias is not None,
        HAS_CHANNEL=channel is not None, HAS_FILTER=filt is not None, HAS_SPATIAL=spatial is not None,
        HAS_LOWRANK=q is not None, LP=lowrank_width(problem.rank), BM=tiles.bm, BN=tiles.bn, BK=tiles.bk,
        PREC=problem.precision, num_warps=tiles.warps, num_stages=tiles.stages, maxnreg=tiles.maxnreg)
    if tiles.splits > 1:
        out = out.sum(0).to(dtype)
    return out.permute(0, 3, 1, 2)  # (B, C_out, H_out, W_out) in channels_last memory


def fused_conv(x: torch.Tensor, weight: KernelMixture | CellMixture, stride: tuple[int, int],
               padding: tuple[int, int] | str, dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """The per-sample conv of a lazy kernel description, without materialising per-sample kernels.

    Returns channels_last memory; `per_sample_conv` hands the caller the format it was given.
    """
    dtype = _compute_dtype(x)
    if isinstance(weight, CellMixture):
        gs, go, gi, co, ci = weight.layout
        cells = prepared(weight.cells, dtype, _rows)
        return _launch(x, weight.kernel_size, go * co, groups, stride, padding, dilation, 1,
                       weight.attention.float().contiguous(), cells, cells=(co, ci, go, gi, cells.shape[0]))
    k, cout, cin_g, kh, kw = weight.bank.shape
    shared = weight.attention is None
    att = torch.ones(x.shape[0], 1, device=x.device) if shared else weight.attention.float().contiguous()
    bank = prepared(weight.bank[:1] if shared else weight.bank, dtype, _bank_layout)
    bias = weight.bias_bank if weight.bias_bank is None or not shared else weight.bias_bank[:1]
    spatial = None if weight.spatial is None else weight.spatial.reshape(x.shape[0], kh * kw)
    return _launch(x, (kh, kw), cout, groups, stride, padding, dilation, 0, att, bank, num_k=bank.shape[0],
                   bias=bias, channel=weight.channel, filt=weight.filter, spatial=spatial)


def lowrank_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
                 q: torch.Tensor, pr: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int]) -> torch.Tensor:
    """The dynamic-decomposition conv, scale * conv(x, W0) + (P Phi) (Q^T x at the centre tap) + bias, in one kernel (groups = 1).

    `q` is Q (C_in, L); `pr` holds each sample's P Phi transposed, (B, L, C_out); `scale` is Lambda (B, C_out).
    """
    kh, kw = weight.shape[2:]
    bank = prepared(weight, _compute_dtype(x), _conv_layout)
    att = torch.ones(x.shape[0], 1, device=x.device)
    return _launch(x, (kh, kw), weight.shape[0], 1, stride, padding, dilation, 0, att, bank,
                   bias=None if bias is None else bias.unsqueeze(0), filt=scale,
                   q=prepared(q, torch.float32, _as_is), r=pr)


# -- device side --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool):  # noqa: ANN202
    """The jitted kernel, built for the interpreter or the GPU as the environment says when first used."""
    del interpret  # the cache key: triton.jit reads TRITON_INTERPRET when it decorates
    from .triton_kernel import conv_kernel
    return triton.jit(conv_kernel)
