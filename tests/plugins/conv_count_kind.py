"""Measurement kind plugin (`dynconv_bench.measures`): the number of nn.Conv2d modules of the built model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dynconv_bench.measures import Kind, Metric, Result, record, register_kind
from dynconv_bench.measures.options import SELECT, MeasureOptions
from dynconv_bench.models.variant import Param


class ConvCountOptions(MeasureOptions):
    params = {**SELECT, "num_classes": Param(10, "classifier outputs", type=int, min=1)}


@dataclass
class ConvCount(Result):
    convs: int = 0


@register_kind
class ConvCountKind(Kind):
    name = "test_conv_count"
    order = 11
    options = ConvCountOptions
    result = ConvCount
    headline = "convs"
    metrics = {"test_convs": Metric(lambda dims, unit: f"plain convs ({unit})", 2, higher_is_better=False)}

    @classmethod
    def measure(cls, spec, opts):  # noqa: ANN001, ANN206
        model = spec.build(opts.num_classes)
        return ConvCount(convs=sum(isinstance(m, nn.Conv2d) for m in model.modules()))

    @classmethod
    def records(cls, options, result):  # noqa: ANN001, ANN206
        return record("test_convs", result.convs, "count")
