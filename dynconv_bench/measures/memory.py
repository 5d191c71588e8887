"""The `memory` kind: peak memory of one forward (or training step) above the process's baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import BATCHES, DEVICE, MODEL, MODES_PARAM, SELECT, MeasureOptions


class MemoryOptions(MeasureOptions):
    params = {**SELECT, **MODEL, "device": DEVICE, "batch_sizes": BATCHES, "modes": MODES_PARAM}


@dataclass
class MemoryValues(Result):
    """Peak bytes of the measured step (`peak_bytes`, above `baseline_bytes`) and how they were read."""

    peak_bytes: int | None = None
    peak_total_bytes: int | None = None
    baseline_bytes: int | None = None
    method: str | None = None
    backbone: str | None = None
    variant: str | None = None
    mode: str = "inference"
    batch_size: int | None = None
    input_size: list[int] = field(default_factory=list)
    device: str = "cpu"
    threads: int | None = None


def _memory_label(d: dict[str, Any], unit: str) -> str:
    dev = "" if d.get("device", "cpu") == "cpu" else f" {d['device']}"
    return f"peak mem{dev} {d.get('mode')} b{d.get('batch_size')} ({unit})"


@register_kind
class Memory(Kind):
    name = "memory"
    order = 3
    options = MemoryOptions
    result = MemoryValues
    headline = "peak_bytes"
    headline_shown = ("peak memory", "MiB", 2.0 ** -20, False)
    timed = True  # a concurrent run on the machine changes what the process sees
    metrics = {"peak_memory": Metric(_memory_label, 3000, higher_is_better=False, timed=True)}

    @classmethod
    def processes(cls, opts: MeasureOptions) -> int:
        """A fresh process per CPU cell: only there is the resident-set peak the step's own (a long-lived process
        reuses memory freed earlier). CUDA's allocator counts exactly, so CUDA cells run in the runner's process
        (a process per cell would cost seconds of CUDA start-up)."""
        return 0 if str(opts.device).startswith("cuda") else 1

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> MemoryValues:
        from ..metrics.step_memory import peak_memory

        return MemoryValues.from_values(peak_memory(spec, batch_size=opts.batch_size, input_size=tuple(opts.input_size),
                                                    mode=opts.mode, device=opts.device, num_classes=opts.num_classes))

    @classmethod
    def records(cls, options: Mapping[str, Any], result: MemoryValues) -> list[Record]:
        peak = None if result.peak_bytes is None else result.peak_bytes / 2**20
        return record("peak_memory", peak, "MiB", mode=options.get("mode", "inference"),
                      batch_size=options.get("batch_size"), device=options.get("device", "cpu"))
