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
in TF32 when torch.backends.cuda.matmul.allow_tf32 is set; bf16/fp16 tiles accumulate in fp32. On CPU the
kernels run only under TRITON_INTERPRET=1 (the jitted kernel is built on first use for the current mode).
"""

from __future__ import annotations

import functools
import os

import torch

from .conv_spec import _reversed_twice
from .per_sample_conv import CellMixture, KernelMixture, capturing_graph, conv_output_size, forced_strategy

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds: the strategy is simply never a candidate
    triton = None

__all__ = ["available", "fused_conv", "lowrank_conv", "prefers_fused", "ready", "runnable"]

_HALF = (torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def available(device: torch.device) -> bool:
    """Triton can run a kernel on `device`: CUDA, or CPU under the interpreter."""
    if triton is None:
        return False
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


def _precision(dtype: torch.dtype) -> str:
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))


def _launch(x: torch.Tensor, kernel: tuple[int, int], cout: int, groups: int, stride, padding, dilation,  # noqa: ANN001
            mode: int, att: torch.Tensor, bank: torch.Tensor, *, bias=None, channel=None, filt=None,  # noqa: ANN001
            spatial=None, cells=(1, 1, 1, 1, 1), q=None, r=None) -> torch.Tensor:  # noqa: ANN001
    dtype = _compute_dtype(x)
    (top, left), (h_out, w_out) = _geometry(x, kernel, stride, padding, dilation)
    b, cin, h, w = x.shape
    xh = x.to(dtype).permute(0, 2, 3, 1).contiguous()  # NHWC: free when x is channels_last already
    out = torch.empty(b, h_out, w_out, cout, device=x.device, dtype=dtype)
    cin_g, cout_g = cin // groups, cout // groups
    bm = 32 if h_out * w_out <= 32 else 64
    bn, bk = _pow2(cout_g, 16, 64), _pow2(cin_g, 16, 32)
    lp = _pow2(q.shape[1], 16, 1 << 20) if q is not None else 16
    dummy = att

    def f32(t: torch.Tensor | None) -> torch.Tensor:
        return dummy if t is None else t.float().contiguous()

    grid = (b * triton.cdiv(h_out * w_out, bm), triton.cdiv(cout_g, bn), groups)
    _kernel(interpreting())[grid](
        xh, out, f32(att), bank, f32(bias), f32(channel), f32(filt), f32(spatial), f32(q), f32(r),
        h, w, cin, h_out, w_out, cout, cin_g, cout_g, att.shape[-1],
        stride[0], stride[1], top, left, dilation[0], dilation[1], *cells,
        0 if q is None else q.shape[1],
        KH=kernel[0], KW=kernel[1], MODE=mode, HAS_BIAS=bias is not None, HAS_CHANNEL=channel is not None,
        HAS_FILTER=filt is not None, HAS_SPATIAL=spatial is not None, HAS_LOWRANK=q is not None, LP=lp,
        BM=bm, BN=bn, BK=bk, PREC=_precision(dtype))
    return out.permute(0, 3, 1, 2)  # (B, C_out, H_out, W_out) in channels_last memory


def fused_conv(x: torch.Tensor, weight: KernelMixture | CellMixture, stride: tuple[int, int],
               padding: tuple[int, int] | str, dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """The per-sample conv of a lazy kernel description, without materialising per-sample kernels.

    Returns channels_last memory; `per_sample_conv` hands the caller the format it was given.
    """
    if isinstance(weight, CellMixture):
        gs, go, gi, co, ci = weight.layout
        cout = go * co
        cells = weight.cells.reshape(weight.cells.shape[0], -1).contiguous()
        return _launch(x, weight.kernel_size, cout, groups, stride, padding, dilation, 1,
                       weight.attention.float().contiguous(), cells, cells=(co, ci, go, gi, cells.shape[0]))
    k, cout, cin_g, kh, kw = weight.bank.shape
    att = weight.attention
    att = torch.ones(x.shape[0], 1, device=x.device) if att is None else att.float().contiguous()
    bank = weight.bank if weight.attention is not None else weight.bank[:1]
    bank = bank.permute(0, 3, 4, 2, 1).contiguous()  # (K, kh, kw, C_in/g, C_out): C_out contiguous
    bias = weight.bias_bank if weight.bias_bank is None or weight.attention is not None else weight.bias_bank[:1]
    spatial = None if weight.spatial is None else weight.spatial.reshape(x.shape[0], kh * kw)
    return _launch(x, (kh, kw), cout, groups, stride, padding, dilation, 0, att, bank, bias=bias,
                   channel=weight.channel, filt=weight.filter, spatial=spatial)


def lowrank_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
                 q: torch.Tensor, pr: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int]) -> torch.Tensor:
    """The dynamic-decomposition conv, scale * conv(x, W0) + (P Phi) (Q^T x at the centre tap) + bias, in one kernel (groups = 1).

    `q` is Q (C_in, L); `pr` holds each sample's P Phi transposed, (B, L, C_out); `scale` is Lambda (B, C_out).
    """
    kh, kw = weight.shape[2:]
    bank = weight.unsqueeze(0).permute(0, 3, 4, 2, 1).contiguous()
    att = torch.ones(x.shape[0], 1, device=x.device)
    return _launch(x, (kh, kw), weight.shape[0], 1, stride, padding, dilation, 0, att, bank,
                   bias=None if bias is None else bias.unsqueeze(0), filt=scale, q=q, r=pr)


# -- device side --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool):  # noqa: ANN202
    """The jitted kernel, built for the interpreter or the GPU as the environment says when first used."""
    del interpret  # the cache key: triton.jit reads TRITON_INTERPRET when it decorates
    return triton.jit(_conv_kernel)


def _conv_kernel(x_ptr, out_ptr, att_ptr, bank_ptr, bias_ptr, chan_ptr, filt_ptr, spat_ptr, q_ptr, r_ptr,  # noqa: ANN001, ANN202, PLR0913
                 H, W, C_IN, H_OUT, W_OUT, C_OUT, CIN_G, COUT_G, NUM_K,
                 STRIDE_H, STRIDE_W, PAD_H, PAD_W, DIL_H, DIL_W,
                 CELL_O, CELL_I, GO, GI, NUM_CELLS, RANK,
                 KH: tl.constexpr, KW: tl.constexpr, MODE: tl.constexpr, HAS_BIAS: tl.constexpr,
                 HAS_CHANNEL: tl.constexpr, HAS_FILTER: tl.constexpr, HAS_SPATIAL: tl.constexpr,
                 HAS_LOWRANK: tl.constexpr, LP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr, PREC: tl.constexpr):
    pid_m, pid_n, g = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    positions = H_OUT * W_OUT
    tiles = (positions + BM - 1) // BM  # builtins only (not tl.cdiv/tl.zeros): their jit mode is fixed at import
    b = (pid_m // tiles).to(tl.int64)  # every row of a program belongs to this one sample
    rows = (pid_m % tiles) * BM + tl.arange(0, BM)
    row_ok = rows < positions
    oh, ow = rows // W_OUT, rows % W_OUT
    cols = pid_n * BN + tl.arange(0, BN)
    col_ok = cols < COUT_G
    n = g * COUT_G + cols  # output channel
    ks = tl.arange(0, BK)
    acc = tl.full((BM, BN), 0.0, tl.float32)
    if HAS_LOWRANK:
        lr = tl.arange(0, LP)
        z = tl.full((BM, LP), 0.0, tl.float32)
    for t in range(KH * KW):
        ih = oh * STRIDE_H - PAD_H + (t // KW) * DIL_H
        iw = ow * STRIDE_W - PAD_W + (t % KW) * DIL_W
        pix_ok = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_row = ((b * H + ih) * W + iw) * C_IN + g * CIN_G
        for c0 in range(0, CIN_G, BK):
            c = c0 + ks
            c_ok = c < CIN_G
            xt = tl.load(x_ptr + x_row[:, None] + c[None, :], mask=pix_ok[:, None] & c_ok[None, :], other=0.0)
            w_ok = c_ok[:, None] & col_ok[None, :]
            wt = tl.full((BK, BN), 0.0, tl.float32)
            if MODE == 0:  # sum_k a_bk W_k[tap, c, n]
                for k in range(NUM_K):
                    a = tl.load(att_ptr + b * NUM_K + k)
                    w_off = ((k * KH * KW + t) * CIN_G + c[:, None]) * C_OUT + n[None, :]
                    wt += a * tl.load(bank_ptr + w_off, mask=w_ok, other=0.0).to(tl.float32)
            else:  # warehouse cells: the element (n, c, tap) lies in cell mixture (tap, n // CELL_O, c // CELL_I)
                mix = (t * GO + n[None, :] // CELL_O) * GI + c[:, None] // CELL_I
                a_row = att_ptr + (b * (KH * KW * GO * GI) + mix) * NUM_CELLS
                cell_off = (n[None, :] % CELL_O) * CELL_I + c[:, None] % CELL_I
                for j in range(NUM_CELLS):
                    a = tl.load(a_row + j, mask=w_ok, other=0.0)
                    wt += a * tl.load(bank_ptr + j * CELL_O * CELL_I + cell_off, mask=w_ok, other=0.0).to(tl.float32)
            if HAS_SPATIAL:
                wt = wt * tl.load(spat_ptr + b * KH * KW + t)
            if HAS_CHANNEL:
                wt = wt * tl.load(chan_ptr + b * C_IN + g * CIN_G + c, mask=c_ok, other=0.0)[:, None]
            acc = tl.dot(xt, wt.to(xt.dtype), acc, input_precision=PREC)
            if HAS_LOWRANK:
                if t == (KH // 2) * KW + KW // 2:  # the low-rank residual reads the centre tap only
                    qt = tl.load(q_ptr + c[:, None] * RANK + lr[None, :], mask=c_ok[:, None] & (lr[None, :] < RANK),
                                 other=0.0)
                    z = tl.dot(xt, qt.to(xt.dtype), z, input_precision=PREC)
    if HAS_FILTER:
        acc = acc * tl.load(filt_ptr + b * C_OUT + n, mask=col_ok, other=0.0)[None, :]
    if HAS_LOWRANK:
        rt = tl.load(r_ptr + (b * RANK + lr[:, None]) * C_OUT + n[None, :], mask=(lr[:, None] < RANK) & col_ok[None, :],
                     other=0.0)
        acc = tl.dot(z.to(x_ptr.dtype.element_ty), rt.to(x_ptr.dtype.element_ty), acc, input_precision=PREC)
    if HAS_BIAS:
        bias = tl.full((BN,), 0.0, tl.float32)
        for k in range(NUM_K):
            bias += tl.load(att_ptr + b * NUM_K + k) * tl.load(bias_ptr + k * C_OUT + n, mask=col_ok, other=0.0)
        acc = acc + bias[None, :]
    out_off = (b * positions + rows[:, None]) * C_OUT + n[None, :]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])
