"""The `layers` kind: median forward time of every leaf module and converted layer (a per-layer table), and the
whole forward timed in the same run, with and without the hooks, so the per-layer sum can be read against it.

How it is timed (CPU, in the cell's own process): ordinary eval forwards of the deployed model with a
`time.perf_counter` pre-hook and post-hook on every leaf module and converted layer (no device sync: the kind runs
on CPU). A layer's figure is the median over the timed forwards of its time per call. The per-layer sum is
sum(median per call x calls per forward); it differs from the whole forward because each layer's median is taken on
its own, the ops outside any module (residual adds, functional calls) are in no layer, and the hooks' Python calls
sit between the layers. Neither figure is a speed cell's: those run in fresh worker processes with fixed malloc
tunables, interleaved with `static`, at their own batch size and thread count."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..models.config_param import Param
from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import MAX_BATCH, MODEL, SELECT, THREADS, MeasureOptions

if TYPE_CHECKING:
    from torch import nn


class LayersOptions(MeasureOptions):
    params = {
        **SELECT, **MODEL,
        "batch_size": Param(1, "batch size of the timed forwards", type=int, min=1, max=MAX_BATCH),
        "repeats": Param(5, "timed forwards (median per layer)", type=int, min=1, max=100_000),
        "threads": THREADS,
    }


@dataclass
class LayersValues(Result):
    """Per-layer rows {layer, type, time_ms, calls} of the deployed model, their sum per forward (`total_ms`), and
    the whole forward's median timed in the same run without hooks (`forward_ms`) and with them
    (`hooked_forward_ms`). Rows of older versions lack the last two (and summed per call)."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    total_ms: float | None = None
    batch_size: int | None = None
    threads: int | None = None
    forward_ms: float | None = None
    hooked_forward_ms: float | None = None
    repeats: int | None = None


def _median(values: Sequence[float]) -> float:
    ts = sorted(values)
    return ts[len(ts) // 2]


def forward_latency(model: nn.Module, input_size: Sequence[int], batch_size: int = 1, repeats: int = 5,
                    warmup: int = 2) -> float:
    """Median wall time (ms) of the whole eval forward, no hooks, the same input shape `layer_latency` uses."""
    import torch

    model = model.eval()
    x = torch.randn(batch_size, *input_size)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000 * _median(times)


def layer_latency(model: nn.Module, input_size: Sequence[int], batch_size: int = 1, repeats: int = 5,
                  warmup: int = 2, forwards: list[float] | None = None) -> list[dict[str, Any]]:
    """Median forward time of every leaf module and converted layer, from hooks around each call; `forwards`, when
    given, receives the wall time (ms) of each timed forward, hooks included."""
    import torch

    from ..models.variant import DynamicLayer

    model = model.eval()
    targets = [(n, m) for n, m in model.named_modules()
               if n and (isinstance(m, DynamicLayer) or not any(True for _ in m.children()))]
    inside = {n for n, m in targets if isinstance(m, DynamicLayer)}
    targets = [(n, m) for n, m in targets if not any(n.startswith(p + ".") for p in inside)]
    times: dict[str, list[float]] = {n: [] for n, _ in targets}
    starts: dict[str, float] = {}
    handles = []
    for name, mod in targets:
        handles.append(mod.register_forward_pre_hook(lambda m, a, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(mod.register_forward_hook(
            lambda m, a, r, n=name: times[n].append(time.perf_counter() - starts[n])))
    x = torch.randn(batch_size, *input_size)
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                if i == warmup:
                    for v in times.values():
                        v.clear()
                start = time.perf_counter()
                model(x)
                if forwards is not None and i >= warmup:
                    forwards.append(1000 * (time.perf_counter() - start))
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, mod in targets:
        if times[name]:
            out.append({"layer": name, "type": type(mod).__name__, "time_ms": 1000 * _median(times[name]),
                        "calls": len(times[name]) // repeats})
    return out


@register_kind
class Layers(Kind):
    name = "layers"
    order = 5
    options = LayersOptions
    result = LayersValues
    headline = "total_ms"
    headline_shown = ("sum of layer times", "ms", 1.0, False)
    timed = True
    metrics = {"layer_time": Metric(lambda d, u: f"{d.get('layer')} ({d.get('type')}, {u})", 6000, compare="none",
                                    in_leaderboard=False, higher_is_better=False, timed=True),
               # the whole forward of the same run (hooks: with the per-layer hooks on): plotted beside the sum
               "layers_forward": Metric(lambda d, u: f"whole forward{' with hooks' if d.get('hooks') else ''} "
                                                     f"b{d.get('batch_size')} ({u})", 6001, compare="none",
                                        in_leaderboard=False, higher_is_better=False, timed=True)}

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> LayersValues:
        import torch

        from ..models.convert import deploy

        model = deploy(spec.build(opts.num_classes))
        size = tuple(opts.input_size)
        forward_ms = forward_latency(model, size, opts.batch_size, opts.repeats)  # warms up for the hooked run too
        hooked: list[float] = []
        layers = layer_latency(model, size, opts.batch_size, opts.repeats, forwards=hooked)
        return LayersValues(layers=layers, total_ms=sum(r["time_ms"] * max(1, r["calls"]) for r in layers),
                            batch_size=opts.batch_size, threads=torch.get_num_threads(), forward_ms=forward_ms,
                            hooked_forward_ms=_median(hooked) if hooked else None, repeats=opts.repeats)

    @classmethod
    def records(cls, options: Mapping[str, Any], result: LayersValues) -> list[Record]:
        """Median forward time of each layer and the whole forward of the same run (plotted, not leaderboard
        columns); each carries the batch size and thread count it ran at."""
        batch = result.batch_size or options.get("batch_size", 1)
        threads = result.threads or options.get("threads")
        return ([r for row in result.layers
                 for r in record("layer_time", row.get("time_ms"), "ms", layer=row.get("layer"), type=row.get("type"),
                                 batch_size=batch, calls=row.get("calls"), threads=threads)]
                + record("layers_forward", result.forward_ms, "ms", batch_size=batch, hooks=False, threads=threads)
                + record("layers_forward", result.hooked_forward_ms, "ms", batch_size=batch, hooks=True,
                         threads=threads))
