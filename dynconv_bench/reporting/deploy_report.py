"""The deployability section of a leaderboard: which export targets each variant's deployed form passes."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["DEPLOY_NOTE", "deploy_table"]


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
