"""Exact per-sample convolution (sample b of x with kernel b) behind one function, in several strategies.

- `grouped`: one grouped conv with the batch folded into channels (groups = B * groups);
- `loop`: B plain convs, one per sample;
- `bmm`: unfold (im2col) and one batched matmul;
- `output_space`: only for a `KernelMixture` (W_b = sum_k a_bk W_k) without spatial
  scaling: one dense conv with the K kernels stacked along C_out, then the attention-weighted sum over K;
- `fused`: a Triton implicit-GEMM conv that mixes each weight tile on the fly from a `KernelMixture` or a
  `CellMixture` (dynconv_bench.models.triton_conv); CUDA (or the CPU interpreter) and inference only: where it cannot
  run (autograd, no triton, per-sample kernels given as a tensor) a forced 'fused' runs 'grouped'.

`auto` (the default) times the applicable strategies once per key (shapes, geometry, dtype, device, threads)
(a candidate that raises is dropped, and `record_strategies` lists it in its `failures`; when every candidate
fails the call raises `StrategyError`) and caches the fastest in memory and, when `DYNCONV_BENCH_STRATEGY_CACHE` (or `set_strategy_cache`) names a
JSON file, on disk (see `strategy_cache`: a hint that never fails a cell). `DYNCONV_BENCH_STRATEGY` or
`use_strategy(...)` forces one strategy. Tuning runs the candidates without autograd on detached inputs, so it
never changes a result or a gradient; under autograd a key reuses the choice tuned for it (forward time) and
tunes it the first time it is seen.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from . import strategy_cache
from .conv_modes import (  # noqa: F401 (re-exported: callers import the strategy switches from here)
    STRATEGIES,
    STRATEGY_ENV,
    capturing_graph,
    conv_output_size,
    eager_paths,
    forced_strategy,
    use_strategy,
)
from .conv_spec import _reversed_twice
from .mixtures import CellMixture, KernelMixture, aggregate_kernels  # noqa: F401 (variants import them from here)

CACHE_ENV = "DYNCONV_BENCH_STRATEGY_CACHE"

Padding = tuple[int, int] | str


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def match_memory_format(out: torch.Tensor, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """Hand the next layer the memory format it was given (`exact`: contiguous too, when x was)."""
    if _channels_last(x):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous() if exact else out


def _output_space_fits(weight: object) -> bool:
    return isinstance(weight, KernelMixture) and weight.spatial is None


def _fused_fits(x: torch.Tensor, weight: object, groups: int, tuning: bool = False) -> bool:
    """Whether the fused kernel can run here; the tuner weighs it only on CUDA (on CPU it is the test interpreter)."""
    from .triton_conv import runnable
    return (not tuning or x.device.type == "cuda") and runnable(x, weight, groups)


def _grouped(x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    b = x.shape[0]
    if b == 1:
        return F.conv2d(x, weight[0], None if bias is None else bias[0], stride, padding, dilation, groups)
    out = F.conv2d(x.reshape(1, b * x.shape[1], x.shape[2], x.shape[3]),
                   weight.reshape(b * weight.shape[1], *weight.shape[2:]),
                   None if bias is None else bias.reshape(-1), stride, padding, dilation, groups * b)
    return match_memory_format(out.view(b, weight.shape[1], out.shape[2], out.shape[3]), x)


def _loop(x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    outs = [F.conv2d(x[i:i + 1], weight[i], None if bias is None else bias[i], stride, padding, dilation, groups)
            for i in range(x.shape[0])]
    return outs[0] if len(outs) == 1 else match_memory_format(torch.cat(outs), x)


def _bmm(x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    b, cout, cin_g, kh, kw = weight.shape
    if isinstance(padding, str):
        x, padding = F.pad(x, _reversed_twice(padding, (kh, kw), dilation)), (0, 0)
    h_out, w_out = conv_output_size(x.shape[2], x.shape[3], (kh, kw), stride, padding, dilation)
    cols = F.unfold(x, (kh, kw), dilation, padding, stride).view(b, groups, cin_g * kh * kw, -1)
    out = torch.matmul(weight.reshape(b, groups, cout // groups, cin_g * kh * kw), cols)
    out = out.reshape(b, cout, h_out, w_out)
    if bias is not None:
        out = out + bias.view(b, cout, 1, 1).to(out.dtype)
    return match_memory_format(out, x)


def _output_space(x, mix: KernelMixture, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    if mix.channel is not None:  # exact: scaling input channels = scaling the kernel's input columns
        x = x * mix.channel.view(*mix.channel.shape, 1, 1).to(x.dtype)
    if mix.attention is None:  # one shared kernel: the dense conv itself (SE's unfused form)
        bias = None if mix.bias_bank is None or mix.filter is not None else mix.bias_bank[0]
        out = F.conv2d(x, mix.bank[0], bias, stride, padding, dilation, groups)
        return _filter_and_bias(out, mix, None if bias is not None else mix.bias())
    k, cout = mix.bank.shape[:2]
    cog = cout // groups
    bank = mix.bank
    if groups > 1:  # a grouped conv's outputs come per group: stack the K kernels inside each group
        bank = bank.view(k, groups, cog, *bank.shape[2:]).transpose(0, 1)
    y = F.conv2d(x, bank.reshape(-1, *mix.bank.shape[2:]), None, stride, padding, dilation, groups)
    b, _, h, w = y.shape
    a = mix.attention.to(y.dtype).view(b, 1, 1, k)
    if _channels_last(y):  # memory is (B, H, W, g, K, C_out/g): sum over K without a copy
        out = torch.matmul(a, y.permute(0, 2, 3, 1).reshape(b, h * w * groups, k, cog))
        out = out.view(b, h, w, cout).permute(0, 3, 1, 2)
    else:
        out = torch.matmul(a, y.reshape(b, groups, k, cog * h * w)).view(b, cout, h, w)
    return _filter_and_bias(out, mix, mix.bias())


def _filter_and_bias(out: torch.Tensor, mix: KernelMixture, bias: torch.Tensor | None) -> torch.Tensor:
    b, cout = out.shape[:2]
    if mix.filter is not None:
        out = out * mix.filter.view(b, cout, 1, 1).to(out.dtype)
    if bias is not None:
        out = out + bias.reshape(b, cout, 1, 1).to(out.dtype)
    return out


_RUN: dict[str, Callable] = {"grouped": _grouped, "loop": _loop, "bmm": _bmm}


def _run(strategy: str, x: torch.Tensor, weight: torch.Tensor | KernelMixture, bias: torch.Tensor | None,
         stride: tuple[int, int], padding: Padding, dilation: tuple[int, int], groups: int) -> torch.Tensor:
    if strategy == "output_space":
        return _output_space(x, weight, stride, padding, dilation, groups)
    if strategy == "fused":
        from .triton_conv import fused_conv
        return match_memory_format(fused_conv(x, weight, stride, padding, dilation, groups), x, exact=True)
    if strategy == "loop" and isinstance(weight, KernelMixture):
        # weight[i] aggregates one sample's kernel at a time: never all B kernels in memory at once
        return _loop(x, weight, weight.bias(), stride, padding, dilation, groups)
    if isinstance(weight, (KernelMixture, CellMixture)):
        weight, bias = weight.weight(), weight.bias()
    return _RUN[strategy](x, weight, bias, stride, padding, dilation, groups)


def per_sample_conv(x: torch.Tensor, weight: torch.Tensor | KernelMixture, bias: torch.Tensor | None,
                    stride: tuple[int, int], padding: Padding, dilation: tuple[int, int], groups: int,
                    strategy: str | None = None) -> torch.Tensor:
    """Convolve sample b of `x` with weight[b] (B, C_out, C_in/g, kh, kw) and bias[b] (B, C_out).

    `weight` may be a `KernelMixture` (then `bias` must be None: the mixture carries it) or a `CellMixture`.
    `strategy` is one of STRATEGIES or 'auto'; None means the forced strategy (env var / `use_strategy`) or 'auto'.
    """
    mixture = isinstance(weight, KernelMixture)
    if isinstance(weight, (KernelMixture, CellMixture)) and bias is not None:
        raise ValueError("pass the bias of a KernelMixture in its bias_bank, not as `bias`")
    stride, dilation = tuple(stride), tuple(dilation)
    padding = padding if isinstance(padding, str) else tuple(padding)
    chosen = strategy or forced_strategy() or "auto"
    if chosen == "output_space" and not _output_space_fits(weight):
        chosen = "grouped"  # output-space aggregation needs the kernel mixture itself, without per-tap scales
    if chosen == "fused" and not _fused_fits(x, weight, groups):
        chosen = "grouped"  # no triton device, autograd, or per-sample kernels already in memory
    if chosen == "auto":
        chosen = _choose(x, weight, bias, stride, padding, dilation, groups, mixture)
    elif chosen not in STRATEGIES:
        raise ValueError(f"unknown per-sample conv strategy {chosen!r}; valid: {', '.join(STRATEGIES)}, auto")
    for rec in _RECORDERS:
        rec[chosen] += 1
    return _run(chosen, x, weight, bias, stride, padding, dilation, groups)


# -- choice: forced, tuned, cached -------------------------------------------------------------------------
class StrategyError(RuntimeError):
    """Every candidate strategy of a per-sample conv failed while it was tuned."""


class StrategyCounts(Counter):
    """Per-sample conv calls per strategy, and `failures`: one line per candidate the tuner dropped because it
    raised, 'layer <strategy key> | strategy <name> | <exception type>: <message>'."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[str] = []
        self.plan: dict[str, str] = {}  # strategy key -> the strategy every tuned ('auto') layer of that key ran


_RECORDERS: list[StrategyCounts] = []
_CACHE: dict[str, str] = {}
_PLAN: list[dict[str, str]] = []  # plans handed in by `follow_plan` (innermost last): they override the caches
_CACHE_FILE: list[Path | None] = []  # empty: not set by set_strategy_cache, read the env var


@contextlib.contextmanager
def record_strategies() -> Iterator[StrategyCounts]:
    """Count the strategy each per-sample conv call inside the block used; `.failures` lists the candidates the
    tuner dropped inside the block because they raised; `.plan` maps each tuned ('auto') layer's strategy key to
    the strategy it ran (what `follow_plan` hands to another process)."""
    rec = StrategyCounts()
    _RECORDERS.append(rec)
    try:
        yield rec
    finally:
        _RECORDERS.remove(rec)


@contextlib.contextmanager
def follow_plan(plan: dict[str, str] | None) -> Iterator[None]:
    """Inside the block, a tuned ('auto') layer whose strategy key is in `plan` runs the planned strategy without
    tuning (before the in-memory and file caches): how the later worker processes of a timed cell run exactly the
    strategies the first one tuned. A planned strategy that does not apply to the layer (another version's plan)
    is ignored and the layer is chosen as usual."""
    _PLAN.append(dict(plan or {}))
    try:
        yield
    finally:
        _PLAN.pop()


def set_strategy_cache(path: str | os.PathLike | None) -> None:
    """Keep tuned choices in this JSON file (None: memory only), instead of DYNCONV_BENCH_STRATEGY_CACHE."""
    _CACHE_FILE[:] = [Path(path) if path else None]


def clear_strategy_cache() -> None:
    """Forget the tuned choices held in memory (the file, if any, is kept)."""
    _CACHE.clear()


def _cache_file() -> Path | None:
    if _CACHE_FILE:
        return _CACHE_FILE[0]
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env) if env else None


def _kind(weight: object) -> str:
    """The form of the kernels: 'kernels' (a tensor), 'cells', or 'mixture'/'shared' plus the scales it carries."""
    if isinstance(weight, CellMixture):
        return "cells"
    if not isinstance(weight, KernelMixture):
        return "kernels"
    scales = [n for n in ("channel", "filter", "spatial") if getattr(weight, n) is not None]
    return "+".join(["mixture" if weight.attention is not None else "shared", *scales])


def strategy_key(x: torch.Tensor, weight_shape: tuple[int, ...], stride: tuple[int, int], padding: Padding,
                 dilation: tuple[int, int], groups: int, mixture: bool | str) -> str:
    """What a tuned choice depends on: shapes, geometry, dtype (and autocast), memory format, device, threads.

    `mixture`: True for a plain KernelMixture, False for kernels in a tensor, or the kind's name (see `_kind`).
    """
    dev = x.device.type
    amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
    kind = mixture if isinstance(mixture, str) else "mixture" if mixture else "kernels"
    parts = (tuple(x.shape), tuple(weight_shape), kind, stride, padding, dilation,
             groups, str(x.dtype).replace("torch.", ""), f"autocast={amp}".replace("torch.", ""),
             "channels_last" if _channels_last(x) else "contiguous", str(x.device), f"threads={torch.get_num_threads()}")
    return "|".join(str(p).replace(" ", "") for p in parts)


def _choose(x, weight, bias, stride, padding, dilation, groups, mixture):  # noqa: ANN001, ANN202
    if capturing_graph():
        return "bmm"  # no timing inside a trace, and a graph without the batch size in a group count
    if x.shape[0] == 1:
        return "loop"  # one plain conv with the sample's kernel: nothing can beat it
    shape = weight.bank.shape if mixture else weight.shape
    key = strategy_key(x, shape, stride, padding, dilation, groups, _kind(weight))
    candidates = tuple(s for s in STRATEGIES if (s != "output_space" or _output_space_fits(weight))
                       and (s != "fused" or _fused_fits(x, weight, groups, tuning=True)))
    if "fused" not in candidates and _fused_fits(x.detach(), _detached(weight), groups, tuning=True):
        key += "|autograd"  # the fused kernel is left out only under autograd: tune that set on its own
    choice = _choose_key(key, candidates, x, weight, bias, stride, padding, dilation, groups)
    if not (x.is_cuda and torch.cuda.is_current_stream_capturing()):  # an untuned capture is no plan
        for rec in _RECORDERS:
            rec.plan[key] = choice
    return choice


def _choose_key(key, candidates, x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    planned = _PLAN[-1].get(key) if _PLAN else None
    if planned is not None and planned in candidates:
        return planned
    if key in _CACHE:
        return _CACHE[key]
    path = _cache_file()
    stored = strategy_cache.load(path).get(key) if path is not None else None
    if stored is not None and stored in candidates:
        _CACHE[key] = stored
        return stored
    if stored is not None:  # a hand-edited file, or one from another version or machine: tune afresh
        strategy_cache.warn_once(path, "stale", f"entry {stored!r} does not apply to a layer it names (valid there: "
                                                f"{', '.join(candidates)}); such entries are tuned afresh")
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        return "bmm"  # a CUDA graph records this shape untuned (no warm-up saw it): timing would sync
    choice = _tune(candidates, x, weight, bias, stride, padding, dilation, groups, layer=key)
    _CACHE[key] = choice
    if path is not None:
        strategy_cache.store(path, key, choice)
    return choice


def _detached(weight: torch.Tensor | KernelMixture | CellMixture) -> torch.Tensor | KernelMixture | CellMixture:
    return weight.detach()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _tune(candidates: tuple[str, ...], x, weight, bias, stride, padding, dilation, groups,  # noqa: ANN001
          repeats: int = 2, layer: str = "?") -> str:
    """The fastest candidate by the best of `repeats` timed forwards (after one warm-up), without autograd.

    A candidate that raises (a kernel that cannot launch here, out of memory) is dropped: each open
    `record_strategies` block gets a line naming the layer (its strategy key), the strategy and the error, and the
    others are still timed. StrategyError when every candidate raised.
    """
    x, weight = x.detach(), _detached(weight)
    bias = None if bias is None else bias.detach()
    cuda = x.device.type == "cuda"
    best, best_t = None, float("inf")
    errors: list[str] = []
    with torch.no_grad():
        for name in candidates:
            times = []
            try:
                for i in range(repeats + 1):
                    if cuda:
                        torch.cuda.synchronize(x.device)
                    t0 = time.perf_counter()
                    _run(name, x, weight, bias, stride, padding, dilation, groups)
                    if cuda:
                        torch.cuda.synchronize(x.device)
                    if i:
                        times.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 (any failure drops the candidate; the others still run)
                line = f"layer {layer} | strategy {name} | {_one_line(exc)}"
                errors.append(line)
                for rec in _RECORDERS:
                    rec.failures.append(line)
                continue
            if min(times) < best_t:
                best, best_t = name, min(times)
    if best is None:
        raise StrategyError(f"every per-sample conv strategy failed for layer {layer}:\n" + "\n".join(errors))
    return best
