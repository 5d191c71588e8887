"""Tile sizes of the fused per-sample conv for a problem and a GPU: a shape-keyed table, pure Python (no Triton).

The table (see `choose_tiles`) is what the launcher runs and what the ahead-of-time compile test walks: BM/BN up
to 128, BK 16-32, 8 warps (255-register ceiling), 2-3 pipelining stages, and split-K when the grid would leave
most SMs idle (batch 1 at the late stages). Register sizes are checked against spills by the AOT test (sm_80, sm_90).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConvProblem", "Tiles", "choose_tiles", "compile_key"]

DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ConvProblem:
    """One fused conv call: shapes, the kernel description's form, compute dtype and dot precision."""

    batch: int
    cin: int
    cout: int
    groups: int
    kernel: tuple[int, int]
    out_size: tuple[int, int]
    mode: int = 0  # 0: K-kernel mixture (or one shared kernel), 1: warehouse cells
    num_k: int = 1
    num_cells: int = 0
    has_bias: bool = False
    has_channel: bool = False
    has_filter: bool = False
    has_spatial: bool = False
    rank: int = 0  # latent width L of a low-rank residual (0: none)
    dtype: str = "fp32"
    precision: str = "ieee"  # fp32 only: 'tf32' or 'ieee'
    in_size: tuple[int, int] = (0, 0)  # (H, W) of the input, padding excluded (the roofline's bytes)

    @property
    def positions(self) -> int:
        return self.out_size[0] * self.out_size[1]

    @property
    def iterations(self) -> int:
        """Reduction steps of one output tile at the chosen BK: taps x channel chunks."""
        return self.kernel[0] * self.kernel[1] * -(-(self.cin // self.groups) // choose_bk(self))


@dataclass(frozen=True)
class Tiles:
    """A launch configuration: tile sizes, warps, pipelining stages and the split-K count."""

    bm: int
    bn: int
    bk: int
    warps: int
    stages: int
    splits: int = 1
    # ptxas's register ceiling per thread: without it ptxas caps some 8-warp kernels at 128 (or 80) registers
    # for occupancy and spills; 255 lets them keep their tiles in registers (checked by the AOT test)
    maxnreg: int = 255


def _pow2(n: int, lo: int, hi: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return max(lo, min(hi, p))


def _bm(p: ConvProblem) -> int:
    if p.mode == 0 and p.num_k >= 4 and p.kernel == (1, 1):
        return 64  # 1x1 mixtures of 4+ kernels spilled at BM 128 with 255 registers (bf16 128x128 on sm_90: 256 B)
    ieee = p.dtype == "fp32" and p.precision == "ieee"
    return 128 if p.positions >= 1024 and not p.rank and not ieee else 64


def choose_bk(p: ConvProblem) -> int:
    # IEEE fp32 dots run on FMA units with both operands in registers, and the cells' gather on 64-row tiles
    # holds index tiles besides (sm_80 spilled at BK 32): BK 16 keeps both from spilling; so does it for TF32 on
    # 128-row tiles (the fp32 weight tile mixed in registers: 128x64x32 spilled 24-52 B on sm_80 at 255 registers)
    narrow = ((p.dtype == "fp32" and (p.precision == "ieee" or _bm(p) == 128))
              or (p.mode == 1 and p.positions < 1024))
    return _pow2(p.cin // p.groups, 16, 16 if narrow else 32)


def choose_tiles(p: ConvProblem, sms: int | None = None) -> Tiles:
    """The launch configuration for `p` on a GPU with `sms` multiprocessors (None: no split-K, e.g. the interpreter).

    BM >= 64 so that sm_90 can issue wgmma (a warpgroup's M is 64); BM = 128 once a sample has enough positions
    to fill it. Register budgets (from the AOT report): tiles up to 128x64x32 or 64x128x32 on 8 warps (128x128
    spills on sm_80), TF32 on 128-row tiles BK 16; IEEE fp32 64x64x16 (FMA dots hold both operands in
    registers); warehouse cells (MODE 1) BN <= 64: the per-element gather of their attention holds index tiles too.
    1x1 mixtures of 4+ kernels BM 64; an IEEE fp32 low-rank residual with a latent width of 64+ BN 16. 8 warps
    throughout (4 spill on the K = 4 mixtures and the cells), compiled with maxnreg 255 (see `Tiles`).
    """
    ieee = p.dtype == "fp32" and p.precision == "ieee"
    bk = choose_bk(p)
    bn = _pow2(p.cout // p.groups, 16, 64 if p.mode == 1 or ieee else 128)
    bm = _bm(p)
    if bm * bn > 128 * 64:  # 128x128 spilled: TF32 on sm_80, bf16 with per-sample filter scales on sm_80 (240 B)
        bn = 64
    if p.rank and ieee and lowrank_width(p.rank) >= 64:
        bn = 16  # FMA dots with a 64-wide latent tile besides: 64x64 and 64x32 spill at 255 registers
    warps = 8
    stages = 2 if p.mode == 1 or p.rank else 3
    splits = 1
    if sms:
        ctas = p.batch * -(-p.positions // bm) * -(-(p.cout // p.groups) // bn) * p.groups
        iters = p.kernel[0] * p.kernel[1] * -(-(p.cin // p.groups) // bk)
        if ctas * 2 <= sms and iters >= 8:
            per = -(-iters // min(sms // ctas, iters // 4, 16))  # at most one wave of CTAs
            splits = -(-iters // per)
    return Tiles(bm, bn, bk, warps, stages, splits)


def lowrank_width(rank: int) -> int:
    """LP, the padded latent width of the low-rank residual's tile (a power of two, at least 16 for tl.dot)."""
    return _pow2(rank, 16, 1 << 20) if rank else 16


def compile_key(p: ConvProblem, t: Tiles) -> dict:
    """What the compiled kernel depends on (constexprs, pointer dtypes, warps, stages, register ceiling): shapes
    are runtime args."""
    return {"KH": p.kernel[0], "KW": p.kernel[1], "MODE": p.mode, "NUM_K": p.num_k if p.mode == 0 else 1,
            "HAS_BIAS": p.has_bias, "HAS_CHANNEL": p.has_channel, "HAS_FILTER": p.has_filter,
            "HAS_SPATIAL": p.has_spatial, "HAS_LOWRANK": p.rank > 0, "LP": lowrank_width(p.rank),
            "BM": t.bm, "BN": t.bn, "BK": t.bk, "PREC": p.precision if p.dtype == "fp32" else "ieee",
            "dtype": p.dtype, "out_dtype": "fp32" if t.splits > 1 else p.dtype, "num_warps": t.warps,
            "num_stages": t.stages, "maxnreg": t.maxnreg}
