"""Tile sizes of the fused per-sample conv for a problem and a GPU: a shape-keyed table, pure Python (no Triton).

The table (see `choose_tiles`) is what the launcher runs and what the ahead-of-time compile test walks: BM/BN up
to 128, BK 16-32, 8 warps (255-register ceiling), 2-3 pipelining stages, and split-K when the grid would leave
most SMs idle (batch 1 at the late stages). Register sizes are checked against spills by the AOT test (sm_80, sm_90).

Shared memory grows with the tile, the pipelining stages, the dtype and the number of mixed kernels K (each stage
buffers K bank tiles): `shared_bytes` is an upper bound of what the compiled kernel asks for (checked against the
compiled figures of docs/fused-kernels.json), and `choose_tiles` shrinks a configuration until it fits the
target's per-block limit (`Target`; A100 163 KiB, H100/H200 227 KiB), so a launch never fails for lack of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["TARGETS", "ConvProblem", "Target", "Tiles", "TilesDoNotFit", "choose_tiles", "compile_key", "ctas_per_sm",
           "shared_bytes", "target_from_properties"]

DTYPES = ("fp32", "bf16", "fp16")
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class Target:
    """A GPU's limits that a launch configuration must respect (CUDA C++ Programming Guide, table "Technical
    Specifications per Compute Capability"; `cudaDevAttrMaxSharedMemoryPerBlockOptin` is what Triton checks at
    launch, raising OutOfResources above it)."""

    arch: int  # compute capability x 10: 80 (A100), 90 (H100, H200)
    sms: int  # multiprocessors (the split-K rule sizes its grid for them)
    smem_block: int  # shared memory one block may use (opt-in maximum), bytes
    smem_sm: int  # shared memory per SM (the largest carveout), bytes
    regs_sm: int = 65536  # 32-bit registers per SM (and per block)
    regs_thread: int = 255  # registers per thread
    ctas_sm: int = 32  # resident blocks per SM
    threads_sm: int = 2048  # resident threads per SM (64 warps)
    smem_reserved: int = 1024  # shared memory the system reserves per resident block (sm_80 and later)

    @property
    def name(self) -> str:
        return f"sm_{self.arch}"


# A100 SXM: 108 SMs, 164 KiB shared memory per SM, 163 KiB (166,912 B) per block; H100 SXM / H200: 132 SMs,
# 228 KiB per SM, 227 KiB (232,448 B) per block
TARGETS = {80: Target(80, 108, 166_912, 167_936), 90: Target(90, 132, 232_448, 233_472)}


class TilesDoNotFit(ValueError):
    """No configuration of the fused kernel fits the target's shared memory for this problem."""


def target_from_properties(props: object) -> Target:
    """The `Target` of a CUDA device from `torch.cuda.get_device_properties` (duck-typed: no torch import here)."""
    arch = props.major * 10 + props.minor
    known = TARGETS.get(arch)
    smem_block = getattr(props, "shared_memory_per_block_optin", 0) or (known.smem_block if known else 49_152)
    smem_sm = getattr(props, "shared_memory_per_multiprocessor", 0) or (known.smem_sm if known else smem_block)
    return Target(arch, props.multi_processor_count, smem_block, smem_sm,
                  regs_sm=getattr(props, "regs_per_multiprocessor", 0) or 65536,
                  threads_sm=getattr(props, "max_threads_per_multi_processor", 0) or 2048)


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


def choose_tiles(p: ConvProblem, sms: int | None = None, target: Target | None = None) -> Tiles:
    """The launch configuration for `p` on a GPU with `sms` multiprocessors (None: no split-K, e.g. the interpreter)
    whose limits are `target` (None: every GPU in TARGETS, i.e. a configuration that fits an A100 and an H100).

    BM >= 64 so that sm_90 can issue wgmma (a warpgroup's M is 64); BM = 128 once a sample has enough positions
    to fill it. Register budgets (from the AOT report): tiles up to 128x64x32 or 64x128x32 on 8 warps (128x128
    spills on sm_80), TF32 on 128-row tiles BK 16; IEEE fp32 64x64x16 (FMA dots hold both operands in
    registers); warehouse cells (MODE 1) BN <= 64: the per-element gather of their attention holds index tiles too.
    1x1 mixtures of 4+ kernels BM 64; an IEEE fp32 low-rank residual with a latent width of 64+ BN 16. 8 warps
    throughout (4 spill on the K = 4 mixtures and the cells), compiled with maxnreg 255 (see `Tiles`).

    Shared memory (`shared_bytes`, which grows with K: each stage buffers K bank tiles) must fit the target's
    per-block limit: while it does not, BN halves down to 64, then the stages drop to 2, then BN halves down to 16,
    then pipelining is switched off (1 stage), then BM halves down to 16 (the widest low-rank latents: the z tile
    is BM x LP); BK is never changed (the split-K steps are counted with it). A mixture of
    8 banks on a 1x1 conv in TF32 (64x128x32, 3 stages: 294,912 B on sm_80, 303,104 B on sm_90) run 64x64x32.
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
    targets = (target,) if target is not None else tuple(TARGETS.values())
    maxnreg = min(255, *(_max_regs(t, warps) for t in targets))
    tiles = Tiles(bm, bn, bk, warps, stages, 1, maxnreg)
    while not all(shared_bytes(p, tiles, t.arch) <= t.smem_block for t in targets):
        if tiles.bn > 64:
            tiles = replace(tiles, bn=tiles.bn // 2)
        elif tiles.stages > 2:
            tiles = replace(tiles, stages=tiles.stages - 1)
        elif tiles.bn > 16:
            tiles = replace(tiles, bn=tiles.bn // 2)
        elif tiles.stages > 1:
            tiles = replace(tiles, stages=1)
        elif tiles.bm > 16:  # a wide low-rank latent: its z (BM x LP) tile
            tiles = replace(tiles, bm=tiles.bm // 2)
        else:
            need = max(shared_bytes(p, tiles, t.arch) for t in targets)
            raise TilesDoNotFit(f"the fused conv kernel needs {need:,} B of shared memory per block for {p} even at "
                                f"{tiles}; the limit is {min(t.smem_block for t in targets):,} B")
    bm, bn, stages = tiles.bm, tiles.bn, tiles.stages
    splits = 1
    if sms:
        ctas = p.batch * -(-p.positions // bm) * -(-(p.cout // p.groups) // bn) * p.groups
        iters = p.kernel[0] * p.kernel[1] * -(-(p.cin // p.groups) // bk)
        if ctas * 2 <= sms and iters >= 8:
            per = -(-iters // min(sms // ctas, iters // 4, 16))  # at most one wave of CTAs
            splits = -(-iters // per)
    return Tiles(bm, bn, bk, warps, stages, splits, maxnreg)


def _max_regs(target: Target, warps: int) -> int:
    """The register ceiling per thread at which a block of `warps` warps still fits the SM's register file."""
    per_warp = target.regs_sm // 4 // -(-warps // 4)  # the register file is split over 4 sub-partitions
    return min(target.regs_thread, per_warp // 256 * 256 // 32)  # allocated per warp in units of 256


def shared_bytes(p: ConvProblem, t: Tiles, arch: int) -> int:
    """An upper bound of the shared memory (bytes per block) the kernel compiled for `t` asks for on sm_`arch`.

    In the main loop, each of the stages - 1 buffered stages holds the x tile (BM x BK), the K bank tiles
    (BK x BN each; the cells' gather: its attention (fp32) and cell tiles), the channel and tap scales and the
    low-rank Q tile (fp32); besides, the mixed weight tile (and Q's) is staged for the dot in the compute dtype, and
    on sm_90 (wgmma) the x tile too. The epilogue reuses the memory: the fp32 accumulator's layout change for the
    store (BM x BN) and the low-rank z (BM x LP) and R (LP x BN) tiles. The larger of the two. On Triton 3.8 this
    equals the compiled figure for the largest (pipelined TF32) tiles and exceeds it elsewhere (bf16/fp16 tiles are
    not pipelined there); tests/test_triton_aot.py checks it against every compiled configuration of the report.
    """
    e = _BYTES[p.dtype]
    lp = lowrank_width(p.rank) if p.rank else 0
    bank = p.num_k * t.bk * t.bn * e if p.mode == 0 else t.bk * t.bn * (4 + e)
    stage = t.bm * t.bk * e + bank + 4 * t.bk * p.has_channel + 4 * p.has_spatial + 4 * t.bk * lp
    staged = t.bk * t.bn * e + (t.bm * t.bk * e if arch >= 90 else 0) + t.bk * lp * e
    loop = max(t.stages - 1, 0) * stage + staged
    epilogue = 4 * t.bm * t.bn + 4 * lp * (t.bm + t.bn)
    return max(loop, epilogue)


def ctas_per_sm(target: Target, warps: int, registers: int, shared: int) -> int:
    """Resident blocks per SM of a kernel with these resources (CUDA's occupancy calculator, cuda_occupancy.h):
    the least of the block limit, the threads, the registers (allocated per warp in units of 256, a quarter of the
    register file per sub-partition) and the shared memory (plus 1 KiB reserved per block, in units of 128 B)."""
    by_threads = target.threads_sm // (warps * 32)
    per_warp = -(-registers * 32 // 256) * 256
    by_regs = 4 * (target.regs_sm // 4 // per_warp) // warps if registers <= target.regs_thread else 0
    smem = -(-(shared + target.smem_reserved) // 128) * 128
    by_smem = target.smem_sm // smem if shared <= target.smem_block else 0
    return min(target.ctas_sm, by_threads, by_regs, by_smem)


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
