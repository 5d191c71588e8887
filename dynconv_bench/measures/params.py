"""The `params` kind: exact parameter counts of the trained and the deployed form, and how many convs converted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models.modelspec import ModelSpec
from .base import Kind, Metric, Record, Result, record, register_kind
from .options import MODEL, SELECT, MeasureOptions


class ParamsOptions(MeasureOptions):
    params = {**SELECT, "num_classes": MODEL["num_classes"]}


@dataclass
class ParamsResult(Result):
    """Counts by category (a tensor shared by several modules counts once) of the model and its deployed form."""

    total: int | None = None
    trainable: int | None = None
    conv: int | None = None
    attention: int | None = None
    modulation: int | None = None
    norm: int | None = None
    classifier: int | None = None
    other: int | None = None
    deployed: dict[str, int] = field(default_factory=dict)
    converted_layers: int | None = None
    total_convs: int | None = None
    no_layer_converted: bool | None = None  # the variant converted nothing on this backbone (see the reason)
    no_conversion_reason: str | None = None


@register_kind
class Params(Kind):
    name = "params"
    order = 0
    options = ParamsOptions
    result = ParamsResult
    headline = "total"
    headline_shown = ("params", "M", 1e-6, False)
    metrics = {"params": Metric(lambda d, u: f"params ({u})", 0, higher_is_better=False),
               "deployed_params": Metric(lambda d, u: f"deployed params ({u})", 1, higher_is_better=False)}

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> ParamsResult:
        from ..metrics.param_count import count_params
        from ..models.convert import deploy

        model = spec.build(opts.num_classes)
        report = getattr(model, "dynconv_report", None)
        out = ParamsResult(**count_params(model), deployed=count_params(deploy(model)))
        if report is not None:
            out.converted_layers, out.total_convs = len(report.converted), report.total_convs
            out.no_layer_converted, out.no_conversion_reason = report.nothing_converted, report.reason
        return out

    @classmethod
    def note(cls, df: Any) -> str:
        return conversion_note(df)

    @classmethod
    def records(cls, options: Mapping[str, Any], result: ParamsResult) -> list[Record]:
        return (record("params", _millions(result.total), "M")
                + record("deployed_params", _millions(result.deployed.get("total")), "M"))


def _millions(value: Any) -> float | None:
    return None if value is None else float(value) * 1e-6


def conversion_note(df: Any) -> str:
    """One line naming the variants that converted no layer of a backbone, and why (their rows are static)."""
    params = df[(df["kind"] == "params") & (df["status"] == "ok")]
    parts = []
    for r in params.itertuples(index=False):
        v = r.values if isinstance(r.values, dict) else {}
        if v.get("no_layer_converted"):
            parts.append(f"{r.variant} on {r.backbone} ({v.get('no_conversion_reason') or 'no reason recorded'})")
    return ("No layer converted, so these rows measure the unconverted model: " + "; ".join(parts) + "."
            if parts else "")
