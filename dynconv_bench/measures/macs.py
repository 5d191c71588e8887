"""The `macs` kind: complete multiply-add counts per image (convs, attention, aggregation) from the traced graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import MODEL, SELECT, THREADS, MeasureOptions


class MacsOptions(MeasureOptions):
    params = {**SELECT, **MODEL, "threads": THREADS}


@dataclass
class MacsResult(Result):
    """`dynconv_bench.profile` of the trained form, per image, without the per-layer breakdown."""

    macs: int | None = None
    flops: int | None = None
    conv_macs: int | None = None
    overhead_macs: int | None = None
    other_macs: int | None = None
    params: int | None = None
    deployed_params: int | None = None
    params_by_category: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    input_size: list[int] = field(default_factory=list)
    batch_size: int | None = None


@register_kind
class Macs(Kind):
    name = "macs"
    order = 1
    options = MacsOptions
    result = MacsResult
    headline = "macs"
    headline_shown = ("MACs", "M", 1e-6, False)
    metrics = {"macs": Metric(lambda d, u: f"MACs trained form ({u})", 2, higher_is_better=False),
               "overhead": Metric(lambda d, u: f"overhead ({u})", 3, compare="none", higher_is_better=False)}

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> MacsResult:
        from ..metrics.flops import profile

        model = spec.build(opts.num_classes).eval()
        out = profile(model, input_size=tuple(opts.input_size)).to_dict()
        out.pop("breakdown", None)  # per-layer tables are large; the layers kind keeps timing per layer
        return MacsResult.from_values(out)

    @classmethod
    def records(cls, options: Mapping[str, Any], result: MacsResult) -> list[Record]:
        macs = result.macs
        overhead = 100.0 * (result.overhead_macs or 0) / macs if macs else None
        return (record("macs", None if macs is None else macs * 1e-6, "M")
                + record("overhead", overhead, "% MACs"))
