"""What every per-sample conv path reads before it runs: the strategy names, the forced strategy, whether a
graph is being captured, and the output size of a conv. Shared by per_sample_conv and triton_conv (no cycle)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ..errors import UserError

STRATEGIES = ("grouped", "loop", "bmm", "output_space", "fused")
STRATEGY_ENV = "DYNCONV_BENCH_STRATEGY"

_FORCED: list[str] = []
_EAGER_PATHS: list[bool] = []


def conv_output_size(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """(H_out, W_out) of a conv with numeric padding, as F.conv2d computes them."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((height, width), kernel, stride, padding, dilation))


def forced_strategy() -> str | None:
    """The strategy forced by `use_strategy` or DYNCONV_BENCH_STRATEGY (None or 'auto': tune)."""
    name = _FORCED[-1] if _FORCED else os.environ.get(STRATEGY_ENV, "").strip() or None
    if name is not None and name != "auto" and name not in STRATEGIES:
        raise UserError(f"{STRATEGY_ENV}={name!r} is not a strategy; valid: {', '.join(STRATEGIES)}, auto")
    return None if name == "auto" else name


@contextlib.contextmanager
def use_strategy(name: str) -> Iterator[None]:
    """Force one strategy ('auto' to tune) for the per-sample convs run inside the block."""
    if name != "auto" and name not in STRATEGIES:
        raise ValueError(f"unknown per-sample conv strategy {name!r}; valid: {', '.join(STRATEGIES)}, auto")
    _FORCED.append(name)
    try:
        yield
    finally:
        _FORCED.pop()


@contextlib.contextmanager
def eager_paths() -> Iterator[None]:
    """Layers take their eager paths even under a trace: a trace that only counts (MACs) must see what runs."""
    _EAGER_PATHS.append(True)
    try:
        yield
    finally:
        _EAGER_PATHS.pop()


def capturing_graph() -> bool:
    """True while TorchScript traces, ONNX exports, torch.export or torch.compile captures the model.

    Layers then take paths that do not branch on the batch size, so a graph keeps a dynamic batch.
    False inside `eager_paths()`, whatever traces.
    """
    if _EAGER_PATHS:
        return False
    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", lambda: False)
    exporting = getattr(compiler, "is_exporting", lambda: False)
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiling() or exporting()
