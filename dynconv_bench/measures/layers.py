"""The `layers` kind: median forward time of every leaf module and converted layer (a per-layer table)."""

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
    """Per-layer rows {layer, type, time_ms, calls} of the deployed model and their sum."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    total_ms: float | None = None
    batch_size: int | None = None
    threads: int | None = None


def layer_latency(model: nn.Module, input_size: Sequence[int], batch_size: int = 1, repeats: int = 5,
                  warmup: int = 2) -> list[dict[str, Any]]:
    """Median forward time of every leaf module and converted layer, from hooks around each call."""
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
                model(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, mod in targets:
        if times[name]:
            ts = sorted(times[name])
            out.append({"layer": name, "type": type(mod).__name__, "time_ms": 1000 * ts[len(ts) // 2],
                        "calls": len(ts) // repeats})
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
                                    in_leaderboard=False, higher_is_better=False, timed=True)}

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> LayersValues:
        import torch

        from ..models.convert import deploy

        model = deploy(spec.build(opts.num_classes))
        layers = layer_latency(model, tuple(opts.input_size), opts.batch_size, opts.repeats)
        return LayersValues(layers=layers, total_ms=sum(r["time_ms"] for r in layers), batch_size=opts.batch_size,
                            threads=torch.get_num_threads())

    @classmethod
    def records(cls, options: Mapping[str, Any], result: LayersValues) -> list[Record]:
        """Median forward time of each layer (plotted, not a leaderboard column)."""
        batch = result.batch_size or options.get("batch_size", 1)
        return [r for row in result.layers
                for r in record("layer_time", row.get("time_ms"), "ms", layer=row.get("layer"), type=row.get("type"),
                                batch_size=batch)]
