"""Cost formulas of fused per-sample conv designs: today's kernel and the candidates of issue 37 (predicted only).

Each design turns one fused call (`ConvProblem`) into the `Op`s the roofline charges (`roofline.op_time`: the
same fitted constants for all): FLOPs on tensor cores (`flops`, the compute class of the run) and on CUDA cores
(`cuda_flops`: the K-way weight mixing where it stays there), HBM bytes (x, y and the bank once: a bank of a
ResNet-18 layer fits the 50-60 MB L2, so its re-reads by every CTA are charged to L2, which the model does not
price; `bank_reads` reports them), and the share of the SMs the grid keeps busy (wave quantisation).

- `today`: what triton_conv launches now. One sample per program; the weight tile is re-mixed from all K banks on
  CUDA cores for every row tile (mixing FLOPs 2 x B x row tiles x K x weights); split-K at batch 1.
- `tall`: mix once per (sample, weight tile) and reuse it across several row tiles: a program covers up to 256
  output rows of its sample (BM 64-256, BN shrunk so the BM x BN fp32 accumulator stays 128 x 64), so the mixing
  FLOPs fall with the row tiles. The same kernel, a different launch configuration.
- `samples_dot`: S samples per program (1-16); the K-way mixing is a tensor-core dot, attention [S x K] times
  bank [K x BK*BN], padded to the dot's minimum (16 rows; K to 16 in half, 8 in TF32). The S accumulators and
  mixed tiles share today's register budget (S x BM x BN <= 128 x 64), so more samples mean shorter row tiles
  and more mixing per sample: the mixing dot costs about 16 x 16 / (S x BM) of the conv's tensor work.
- `stream_k`: today's tiles, the work (tiles x reduction steps) spread evenly over every SM (stream-K): no wave
  quantisation, each CTA writes at most one fp32 partial tile that a fix-up reads back.

Launches: every design is one kernel per layer here; a CUDA-graph-friendly launch path is priced by evaluating
the forward in the roofline's 'graph' mode (no host cost), not by a design.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..models.triton_tiles import ConvProblem, Tiles, choose_tiles
from .gpu_cost import GPU, Op

__all__ = ["DESIGNS", "NEW_DESIGNS", "bank_reads", "samples_dot", "samples_tiles", "stream_k", "tall", "tall_tiles", "today"]

# today's register budget: its largest tiles that compile without spilling (128x64x32, 64x128x32 at 255 registers)
# hold 128 x 64 fp32 accumulators and a 32 x 128 mixed weight tile; a new design may not hold more
ACC = 128 * 64
MIXED = 32 * 128


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _compute(p: ConvProblem) -> str:
    return "half" if p.dtype != "fp32" else "tf32" if p.precision == "tf32" else "fp32"


def _sizes(p: ConvProblem) -> tuple[int, int, int, int, int]:
    """(element bytes, weights of one mixed kernel, x elements, y elements, banks mixed per weight element)."""
    e = 4 if p.dtype == "fp32" else 2
    (ho, wo), (hi, wi) = p.out_size, p.in_size
    w = p.cout * (p.cin // p.groups) * p.kernel[0] * p.kernel[1]
    x, y = p.batch * p.cin * hi * wi, p.batch * p.cout * ho * wo
    return e, w, x, y, p.num_cells if p.mode == 1 else p.num_k


def _tensor(p: ConvProblem, bm: int, bn: int, bk: int, samples: int | None = None) -> float:
    """Tensor-core FLOPs of the padded tiles (and the low-rank residual's two dots)."""
    m_tiles, n_tiles = _cdiv(p.positions, bm), _cdiv(p.cout // p.groups, bn)
    reduction = _cdiv(p.cin // p.groups, bk) * bk * p.kernel[0] * p.kernel[1]
    flops = 2.0 * (samples or p.batch) * p.groups * m_tiles * bm * n_tiles * bn * reduction
    if p.rank:
        flops += 2.0 * p.batch * m_tiles * bm * p.rank * (p.cin + p.cout)
    return flops


def _occupancy(ctas: int, sms: int) -> float:
    return ctas / (_cdiv(ctas, sms) * sms)


def today(p: ConvProblem, gpu: GPU) -> list[Op]:
    """Today's fused Triton conv (triton_conv._launch): padded tiles on tensor cores, the weight tiles mixed on
    CUDA cores once per row tile, x, y and the bank read once, split-K slices, wave quantisation."""
    return _mixed_per_row_tile(p, gpu, choose_tiles(p, gpu.sms))


def _mixed_per_row_tile(p: ConvProblem, gpu: GPU, t: Tiles) -> list[Op]:
    """One launch of tiles `t` that mixes each weight tile on CUDA cores once per row tile (today's and `tall`'s
    formula; only their tiles differ)."""
    e, w, x, y, n = _sizes(p)
    m_tiles, n_tiles = _cdiv(p.positions, t.bm), _cdiv(p.cout // p.groups, t.bn)
    mixing = 2.0 * p.batch * m_tiles * n * w
    ctas = p.batch * m_tiles * n_tiles * p.groups * t.splits
    split = 2 * 4 * y * t.splits if t.splits > 1 else 0
    return [Op("fused", "fused", _tensor(p, t.bm, t.bn, t.bk), e * (x + y + n * w) + split, _compute(p), mixing,
               occupancy=_occupancy(ctas, gpu.sms))]


def tall_tiles(p: ConvProblem, sms: int | None = None) -> Tiles:
    """`tall`'s launch configuration: today's BK, warps and stages; BM the power of two in 64..256 with the fewest
    padded rows x (1 + mixing share), BN = min(today's, ACC / BM); split-K as today's rule sizes it."""
    t = choose_tiles(p, sms)
    if p.mode != 0 or p.num_k < 2:
        return t  # nothing mixed (one shared kernel) or the cells' per-element gather: today's tiles
    ratio = 8 if p.dtype == "fp32" else 16  # about H100/H200's tensor-core / CUDA-core peak ratio (TF32, half)
    best = None
    for bm in (64, 128, 256):
        rows = _cdiv(p.positions, bm) * bm
        cost = rows * (1 + ratio * p.num_k / bm)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, bm)
    bm = best[1]
    bn = min(t.bn, max(16, ACC // bm))
    q = dataclasses.replace(t, bm=bm, bn=bn, splits=1)
    if sms:
        ctas = p.batch * _cdiv(p.positions, bm) * _cdiv(p.cout // p.groups, bn) * p.groups
        iters = p.kernel[0] * p.kernel[1] * _cdiv(p.cin // p.groups, t.bk)
        if ctas * 2 <= sms and iters >= 8:
            per = _cdiv(iters, min(sms // ctas, iters // 4, 16))
            q = dataclasses.replace(q, splits=_cdiv(iters, per))
    return q


def tall(p: ConvProblem, gpu: GPU) -> list[Op]:
    """Mix once per (sample, weight tile) for up to 256 rows (`tall_tiles`): mixing 2 x B x ceil(rows / BM) x K x
    weights on CUDA cores; otherwise today's formula with these tiles."""
    return _mixed_per_row_tile(p, gpu, tall_tiles(p, gpu.sms))


def samples_tiles(p: ConvProblem) -> tuple[int, int, int, int]:
    """`samples_dot`'s (S, BM, BN, BK) within today's register budget (S x BM x BN fp32 accumulators <= ACC,
    S x BK x BN mixed weights <= MIXED), the fewest tensor-core FLOPs (padded conv + mixing dot) per sample."""
    bk, k_pad = choose_tiles(p).bk, max(p.num_k, 16 if p.dtype != "fp32" else 8)
    best = None
    for s in (1, 2, 4, 8, 16):
        for bm in (16, 32, 64, 128):
            for bn in (16, 32, 64):
                if s > max(p.batch, 1) or s * bm * bn > ACC or s * bk * bn > MIXED:
                    continue
                rows = _cdiv(p.positions, bm) * bm
                cols = _cdiv(p.cout // p.groups, bn) * bn
                cost = rows * cols + _cdiv(p.positions, bm) * max(s, 16) * k_pad * cols / s
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, s, bm, bn)
    return best[1], best[2], best[3], bk


def samples_dot(p: ConvProblem, gpu: GPU) -> list[Op]:
    """S samples per program (`samples_tiles`), the K-way mixing a tensor-core dot ([S, K] x [K, BK*BN], padded
    to 16 rows and K to 16 in half / 8 in TF32, once per row tile). Mixtures (K > 1) on tensor cores only;
    otherwise today's formula."""
    compute = _compute(p)
    if p.mode != 0 or p.num_k < 2 or compute == "fp32":
        return today(p, gpu)
    s, bm, bn, bk = samples_tiles(p)
    e, w, x, y, n = _sizes(p)
    m_tiles, n_tiles = _cdiv(p.positions, bm), _cdiv(p.cout // p.groups, bn)
    k_pad = max(n, 16 if compute == "half" else 8)
    mixing = 2.0 * _cdiv(p.batch, s) * m_tiles * max(s, 16) * k_pad * w
    ctas = _cdiv(p.batch, s) * m_tiles * n_tiles * p.groups
    return [Op("fused", "fused", _tensor(p, bm, bn, bk) + mixing, e * (x + y + n * w), compute,
               occupancy=_occupancy(ctas, gpu.sms))]


def stream_k(p: ConvProblem, gpu: GPU) -> list[Op]:
    """Today's tiles and mixing with the (tile, reduction step) work spread evenly over the SMs: occupancy
    work / (SMs x ceil(work / SMs)); one fp32 partial tile per CTA written and read back."""
    t = choose_tiles(p)
    e, w, x, y, n = _sizes(p)
    m_tiles, n_tiles = _cdiv(p.positions, t.bm), _cdiv(p.cout // p.groups, t.bn)
    iters = p.kernel[0] * p.kernel[1] * _cdiv(p.cin // p.groups, t.bk)
    tiles = p.batch * m_tiles * n_tiles * p.groups
    work = tiles * iters
    ctas = min(gpu.sms, work)
    occupancy = work / (ctas * _cdiv(work, ctas)) * ctas / gpu.sms
    fixup = 2 * 4 * t.bm * t.bn * ctas if tiles % gpu.sms else 0
    mixing = 2.0 * p.batch * m_tiles * n * w
    return [Op("fused", "fused", _tensor(p, t.bm, t.bn, t.bk), e * (x + y + n * w) + fixup, _compute(p), mixing,
               occupancy=occupancy)]


def bank_reads(p: ConvProblem, gpu: GPU, design: str) -> float:
    """Bytes of bank tiles the design's CTAs read (from L2 or HBM): every CTA reads its K bank tiles."""
    e, w, _, _, n = _sizes(p)
    if design == "samples_dot" and p.mode == 0 and p.num_k > 1 and _compute(p) != "fp32":
        s, bm, _, _ = samples_tiles(p)
        return float(e * n * w * _cdiv(p.batch, s) * _cdiv(p.positions, bm))
    t = tall_tiles(p, gpu.sms) if design == "tall" else choose_tiles(p, gpu.sms)
    return float(e * n * w * p.batch * _cdiv(p.positions, t.bm))


DESIGNS: dict[str, Callable[[ConvProblem, GPU], list[Op]]] = {
    "today": today, "tall": tall, "samples_dot": samples_dot, "stream_k": stream_k}
NEW_DESIGNS = ("tall", "samples_dot", "stream_k")
