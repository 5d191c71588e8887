"""The `deploy` kind: which export targets (torch.export, ONNX, compile, TorchScript) the deployed form passes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import UserError, unknown_choice
from ..models.config_param import Param
from ..models.modelspec import ModelSpec
from .base import Kind, Record, Result, register_kind
from .options import MAX_SECONDS, MODEL, SELECT, THREADS, MeasureOptions


class DeployOptions(MeasureOptions):
    params = {
        **SELECT, **MODEL,
        "targets": Param(None, "torch_export, onnx, compile, torchscript (default: all)", type=list),
        "threads": THREADS,
        "min_time": Param(None, "seconds of timed onnxruntime and eager runs at least", type=float, min=0.0,
                          max=MAX_SECONDS),
    }


@dataclass
class DeployValues(Result):
    """Per target {status, error, max_abs_diff, max_rel_diff, dynamic_batch, ...} and the settings of the matrix."""

    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    tolerance: float | None = None
    threads: int | None = None
    eager_max_abs: dict[str, float] = field(default_factory=dict)
    batchnorms_calibrated: int | None = None


@register_kind
class Deploy(Kind):
    name = "deploy"
    order = 6
    options = DeployOptions
    result = DeployValues

    @classmethod
    def measure(cls, spec: ModelSpec, opts: MeasureOptions) -> DeployValues:
        from ..metrics.export import TARGETS, calibrate_batchnorm, deploy_matrix
        from ..models.convert import deploy

        model = spec.build(opts.num_classes)
        calibrated = calibrate_batchnorm(model, tuple(opts.input_size))  # outputs O(1), as in a trained model
        kw = {"min_time": opts.min_time} if opts.min_time is not None else {}
        out = deploy_matrix(deploy(model), tuple(opts.input_size), opts.targets or TARGETS, **kw)
        return DeployValues.from_values({**out, "batchnorms_calibrated": calibrated})

    @classmethod
    def records(cls, options: Mapping[str, Any], result: DeployValues) -> list[Record]:
        return []  # a matrix of texts, shown by `section`

    @classmethod
    def check(cls, table: dict[str, Any], where: str) -> None:
        from ..metrics.export import TARGETS

        targets = table["targets"]
        if targets is None:
            return
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise UserError(f"{where}.targets must be a non-empty list of names")
        for t in targets:
            if t not in TARGETS:
                raise UserError(f"{where}.targets: {unknown_choice('deploy target', t, TARGETS)}")
        table["targets"] = targets

    @classmethod
    def section(cls, df: pd.DataFrame) -> tuple[str, pd.DataFrame, str] | None:
        table = deploy_table(df)
        return None if table.empty else ("Deployability", table, DEPLOY_NOTE)


def deploy_table(df: pd.DataFrame) -> pd.DataFrame:
    """The deployability matrix: one row per backbone/variant, one column per export target.

    A cell reads `ok (diff 1e-06, dyn)` or `FAILED: first line of the error`; `ORT/eager` is
    onnxruntime's throughput over eager PyTorch's, timed in the same process with the same threads.
    """
    rows = []
    for r in df[(df["kind"] == "deploy") & (df["status"] == "ok")].itertuples(index=False):
        targets = (r.values or {}).get("targets", {})
        row: dict[str, Any] = {"model": f"{r.backbone}/{r.variant}"}
        for name, e in sorted(targets.items(), key=lambda kv: _TARGET_ORDER.index(kv[0])
                              if kv[0] in _TARGET_ORDER else 99):
            if e.get("status") == "ok":
                diff = e.get("max_rel_diff")
                if diff is None:  # rows stored before relative differences were recorded
                    diff = max((e.get("max_abs_diff") or {"": 0.0}).values())
                row[name] = f"ok (diff {diff:.1g}{', dyn' if e.get('dynamic_batch') else ''})"
            else:
                row[name] = f"FAILED: {e.get('error')}"
        onnx = targets.get("onnx") or {}
        row["ORT/eager"] = f"{onnx['ort_vs_eager']:.2f}x" if onnx.get("ort_vs_eager") else "-"
        rows.append(row)
    return pd.DataFrame(rows).set_index("model").fillna("-") if rows else pd.DataFrame()


_TARGET_ORDER = ["torch_export", "onnx", "compile", "torchscript"]
DEPLOY_NOTE = ("diff: max abs difference to eager over batch 1 and 4, relative to eager's largest |output| "
               "(BatchNorm statistics calibrated on random inputs first, so outputs are O(1)); dyn: exported with "
               "a dynamic batch dimension; ORT/eager: onnxruntime (CPU) throughput over eager PyTorch at the "
               "largest batch, same process and threads.")
