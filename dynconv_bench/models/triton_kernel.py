"""The device side of the fused per-sample conv: one Triton implicit-GEMM kernel (NHWC), weight tiles mixed on the fly.

Each program computes an output tile (BM rows of one sample's H_out*W_out, BN output channels of one group) over
its share of the reduction (kh*kw taps x C_in/g channels, walked as one flat loop of BK-wide chunks so that a
split-K launch gives each split a contiguous range). Split k writes its partial sums to slice k of an fp32
workspace (SPLIT_STRIDE apart); the host adds the slices in a fixed order, so results stay deterministic.

Operand layouts (prepared once per parameter version by the host, see triton_conv.py):
x (B, H, W, C_in); bank (K, kh, kw, C_in/g, C_out) or cells (n, c_o*c_i); out (B, H_out, W_out, C_out).
"""

from __future__ import annotations

import triton.language as tl

__all__ = ["CONSTEXPRS", "conv_kernel", "signature"]

CONSTEXPRS = ("KH", "KW", "MODE", "NUM_K", "HAS_BIAS", "HAS_CHANNEL", "HAS_FILTER", "HAS_SPATIAL", "HAS_LOWRANK",
              "LP", "BM", "BN", "BK", "PREC")
POINTERS = ("x_ptr", "out_ptr", "att_ptr", "bank_ptr", "bias_ptr", "chan_ptr", "filt_ptr", "spat_ptr", "q_ptr",
            "r_ptr")


def signature(arg_names: list[str], x: str, out: str, bank: str) -> dict[str, str]:
    """Triton's compile signature: pointer element types (x, out, bank as given; the rest fp32), i32 scalars."""
    types = {"x_ptr": x, "out_ptr": out, "bank_ptr": bank}
    return {n: "constexpr" if n in CONSTEXPRS else f"*{types.get(n, 'fp32')}" if n in POINTERS else "i32"
            for n in arg_names}


def conv_kernel(x_ptr, out_ptr, att_ptr, bank_ptr, bias_ptr, chan_ptr, filt_ptr, spat_ptr, q_ptr, r_ptr,  # noqa: ANN001, ANN201, PLR0913
                H, W, C_IN, H_OUT, W_OUT, C_OUT, CIN_G, COUT_G, NUM_CELLS,
                STRIDE_H, STRIDE_W, PAD_H, PAD_W, DIL_H, DIL_W,
                CELL_O, CELL_I, GO, GI, RANK, GROUPS, SPLIT_ITERS, SPLIT_STRIDE,
                KH: tl.constexpr, KW: tl.constexpr, MODE: tl.constexpr, NUM_K: tl.constexpr,
                HAS_BIAS: tl.constexpr, HAS_CHANNEL: tl.constexpr, HAS_FILTER: tl.constexpr,
                HAS_SPATIAL: tl.constexpr, HAS_LOWRANK: tl.constexpr, LP: tl.constexpr, BM: tl.constexpr,
                BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    pid_m, pid_n, pid_gs = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    g = pid_gs % GROUPS
    split = pid_gs // GROUPS
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
    chunks = (CIN_G + BK - 1) // BK
    it0 = split * SPLIT_ITERS
    it1 = it0 + SPLIT_ITERS
    if it1 > KH * KW * chunks:
        it1 = KH * KW * chunks
    acc = tl.full((BM, BN), 0.0, tl.float32)
    if HAS_LOWRANK:
        lr = tl.arange(0, LP)
        z = tl.full((BM, LP), 0.0, tl.float32)
    for it in range(it0, it1):
        t = it // chunks
        c = (it - t * chunks) * BK + ks
        ih = oh * STRIDE_H - PAD_H + (t // KW) * DIL_H
        iw = ow * STRIDE_W - PAD_W + (t % KW) * DIL_W
        pix_ok = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_row = ((b * H + ih) * W + iw) * C_IN + g * CIN_G
        c_ok = c < CIN_G
        xt = tl.load(x_ptr + x_row[:, None] + c[None, :], mask=pix_ok[:, None] & c_ok[None, :], other=0.0)
        w_ok = c_ok[:, None] & col_ok[None, :]
        if MODE == 0:  # sum_k a_bk W_k[tap, c, n], K unrolled (a compile-time count)
            w_off = (t * CIN_G + c[:, None]) * C_OUT + n[None, :]
            wt = tl.load(att_ptr + b * NUM_K) * tl.load(bank_ptr + w_off, mask=w_ok, other=0.0).to(tl.float32)
            for k in tl.static_range(1, NUM_K):
                a = tl.load(att_ptr + b * NUM_K + k)
                wt += a * tl.load(bank_ptr + k * KH * KW * CIN_G * C_OUT + w_off, mask=w_ok, other=0.0).to(tl.float32)
        else:  # warehouse cells: the element (n, c, tap) lies in cell mixture (tap, n // CELL_O, c // CELL_I)
            wt = tl.full((BK, BN), 0.0, tl.float32)
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
    if HAS_LOWRANK:  # linear in z: each split adds its share (zero when it never met the centre tap)
        rt = tl.load(r_ptr + (b * RANK + lr[:, None]) * C_OUT + n[None, :], mask=(lr[:, None] < RANK) & col_ok[None, :],
                     other=0.0)
        acc = tl.dot(z.to(x_ptr.dtype.element_ty), rt.to(x_ptr.dtype.element_ty), acc, input_precision=PREC)
    if HAS_BIAS:
        if split == 0:
            bias = tl.full((BN,), 0.0, tl.float32)
            for k in tl.static_range(NUM_K):
                bias += tl.load(att_ptr + b * NUM_K + k) * tl.load(bias_ptr + k * C_OUT + n, mask=col_ok, other=0.0)
            acc = acc + bias[None, :]
    out_off = split.to(tl.int64) * SPLIT_STRIDE + (b * positions + rows[:, None]) * C_OUT + n[None, :]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])
