"""The columns of the LaTeX tables, per group of figures (cost, speed, accuracy, other), built from a backbone's
numeric leaderboard: short headers with units, values with their intervals and marks."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..escape import latex_text
from ..leaderboard import BASELINE
from ..marks import MARKS
from ..rows import metric_rows
from ..table_text import format_number, format_table
from .latex_cells import PUBLISHED_MARK, Column

_PUBLISHED = " (published weights)"
GROUPS = {"cost": "cost", "speed": "speed", "accuracy": "accuracy", "other": "other figures"}
GROUP_OF = {"params": "cost", "deployed_params": "cost", "macs": "cost", "overhead": "cost", "peak_memory": "cost",
            "latency": "speed", "throughput": "speed", "top1": "accuracy"}


def column_info(rows: pd.DataFrame) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Per leaderboard label: its metric, unit and dimensions."""
    long = metric_rows(rows)
    dims = [c for c in long.columns if c not in ("backbone", "variant", "id", "environment_id", "run_id", "metric",
                                                 "unit", "label", "compare", "order", "higher_is_better", "value",
                                                 "flags", "ratio", "ratio_low", "ratio_high")]
    out = {}
    for r in long.drop_duplicates("label").itertuples(index=False):
        d = r._asdict()
        out[str(r.label)] = (str(r.metric), str(r.unit), {k: d[k] for k in dims if not _missing(d[k])})
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _marks(table: pd.DataFrame, col: str) -> list[str]:
    """The marks of `col` per row (our own mark for published weights last), from the table's `... marks` column."""
    raw = table.get(f"{col} marks", pd.Series(index=table.index, dtype=object))
    out = []
    for m in raw:
        m = m if isinstance(m, str) else ""
        out.append("".join(c for c in m.replace(_PUBLISHED, "") if c in MARKS) + (PUBLISHED_MARK if _PUBLISHED in m else ""))
    return out


def _batch(dims: dict[str, Any]) -> str:
    return f"b{int(dims['batch_size'])}" if "batch_size" in dims else ""


def cost_columns(table: pd.DataFrame, labels: list[str], info: dict) -> list[Column]:
    """Params (M), deployed params (M), MACs (M or G), MAC overhead (%), peak memory (MiB): values only."""
    out = []
    for col in labels:
        metric, unit, dims = info[col]
        vals = table[col].astype(float)
        scale, shown_unit = 1.0, unit
        if metric == "macs" and unit == "M" and vals.abs().median() >= 1000:
            scale, shown_unit = 1e-3, "G"
        header = {"params": f"Params ({shown_unit})", "deployed_params": f"Deployed params ({shown_unit})",
                  "macs": f"MACs ({shown_unit})", "overhead": "MAC overhead (%)"}.get(metric)
        if metric == "peak_memory":
            header = f"{'Train mem' if dims.get('mode') == 'train' else 'Mem'} {_batch(dims)} ({unit})".replace(
                "  ", " ")
        if metric == "overhead":
            cells = ["-" if pd.isna(v) else f"{v:.1f}" for v in vals]
        else:
            cells = [format_number(v * scale) for v in vals]
        out.append(Column(header or col, [c + m if c != "-" else c for c, m in zip(cells, _marks(table, col))]))
    return out


def _ratio_column(table: pd.DataFrame, col: str, compare: str, baseline: str) -> str:
    return f"{col} speed-up vs {baseline}" if compare == "speedup" else f"{col} vs {baseline}"


def _interval(x: float, lo: Any, hi: Any) -> str:
    if pd.isna(x):
        return "-"
    return f"{x:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else f"{x:.2f}"


def speed_columns(table: pd.DataFrame, labels: list[str], info: dict) -> tuple[list[Column], list[str]]:
    """The speed-up over the baseline per device, mode and batch (throughput's ratio; latency's speed-up where no
    throughput of that device and batch has one) with its interval, the baseline's row its A/A measurement, and
    the img/s of one batch size (16, else the largest) as the report's table holds it (the baseline's measured
    throughput times each row's ratio where the baseline has a cell). Returns the notes."""
    baseline = table.attrs.get("baseline", BASELINE)
    compare = table.attrs.get("compare", {})
    devices = {info[c][2].get("device") for c in labels}
    have = {(info[c][2].get("device"), info[c][2].get("batch_size")) for c in labels
            if info[c][0] == "throughput" and info[c][2].get("mode") != "train"
            and _ratio_column(table, c, compare[c], baseline) in table}
    out, kinds, aa = [], set(), False
    nan = pd.Series(index=table.index, dtype=object)
    for col in labels:
        metric, unit, dims = info[col]
        ratio = _ratio_column(table, col, compare[col], baseline)
        if ratio not in table:
            continue
        if metric == "latency" and (dims.get("device"), dims.get("batch_size")) in have:
            continue  # the same cells' throughput ratio says it
        parts = [dims.get("device") if len(devices) > 1 else None,
                 "train" if dims.get("mode") == "train" else ("latency" if metric == "latency" else None),
                 _batch(dims)]
        header = " ".join(p for p in parts if p)
        measured = table.get(f"{ratio} measured", nan)
        kinds |= set(table.get(f"{ratio} interval", nan).dropna())
        cells = []
        for v, x, a, lo, hi in zip(table.index, table[ratio], measured, table.get(f"{ratio} low", nan),
                                   table.get(f"{ratio} high", nan)):
            if v == baseline and pd.notna(a):
                aa = True
                cells.append("A/A " + _interval(a, lo, hi))
            else:
                cells.append(_interval(x, lo, hi))
        out.append(Column(header or col, [c + m if c != "-" else c for c, m in zip(cells, _marks(table, col))]))
    if not out:
        return [], []
    bracket = {"95% bootstrap": "95% interval (bootstrap over rounds and processes)",
               "process min-max": "min-max of the worker processes' ratios"}
    shown = [bracket.get(k, k) for k in sorted(kinds, reverse=True)]
    notes = [f"Speed-up over {baseline} (×, higher is better) measured in each cell"
             + (f", [{' or '.join(shown)}]" if shown else "")
             + (f"; {baseline}: A/A, against itself (the noise floor)" if aa else "") + "."]
    infer = [c for c in labels if info[c][0] == "throughput" and info[c][2].get("mode") != "train"]
    pick = ([c for c in infer if info[c][2].get("batch_size") == 16] or
            sorted(infer, key=lambda c: -(info[c][2].get("batch_size") or 0)))[:1]
    for col in pick:
        dims = info[col][2]
        where = f"{dims.get('device')} " if len(devices) > 1 else ""
        out.append(Column(f"{where}{_batch(dims)} img/s", [format_number(v) for v in table[col].astype(float)]))
        if f"{col} measured" in table:
            notes.append(f"img/s: {baseline}'s measured throughput × the row's ratio.")
    return out, notes


def accuracy_columns(table: pd.DataFrame, labels: list[str], info: dict) -> tuple[list[Column], list[str]]:
    """Per dataset: top-1 mean ± std over seeds, and the difference of means to the baseline in points with its 95%
    Welch interval (`*` where it excludes 0), or with too few seeds the range of the seed pairs' differences.
    Returns the notes (the seeds, what the brackets hold)."""
    baseline = table.attrs.get("baseline", BASELINE)
    out, seeds, pairs = [], set(), False
    nan = pd.Series(index=table.index, dtype=object)
    for col in labels:
        dims = info[col][2]
        name = dims.get("dataset", "")
        std, n = table[f"{col} std"], table[f"{col} n"]
        seeds |= {int(k) for k in n if pd.notna(k)}
        cells = ["-" if pd.isna(m) else f"{m:.2f}" + (f" ± {s:.2f}" if pd.notna(s) else "")
                 for m, s in zip(table[col], std)]
        cells = [c + mk if c != "-" else c for c, mk in zip(cells, _marks(table, col))]
        out.append(Column(f"Top-1 {name} (%)".replace("  ", " "), cells))
        vs = f"{col} vs {baseline}"
        if f"{vs} (pts)" in table:
            diff = []
            for v, d, lo, hi, sig, slo, shi in zip(table.index, table[f"{vs} (pts)"], table[f"{vs} CI low"],
                                                   table[f"{vs} CI high"], table[f"{vs} significant"],
                                                   table.get(f"{vs} seeds low", nan), table.get(f"{vs} seeds high", nan)):
                if v == baseline or pd.isna(d):
                    diff.append("-")
                elif slo is not None and pd.notna(slo):
                    pairs = True
                    diff.append(f"{d:+.2f} ({slo:+.2f} to {shi:+.2f})")
                elif lo is None or pd.isna(lo):
                    diff.append(f"{d:+.2f}")
                else:
                    diff.append(f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" + ("*" if sig else ""))
            out.append(Column(f"Δ {name} (pts)".replace("  ", " "), diff,
                              tex_header=latex_text(f"Δ {name} (pts)".replace("  ", " "))))
    if not out:
        return [], []
    n_text = (f"n={min(seeds)}" if len(seeds) == 1 else f"n={min(seeds)}-{max(seeds)}") if seeds else "n"
    return out, [f"Top-1: mean ± std over {n_text} seeds; Δ: difference of means to {baseline} in points"
                 + (", [95% Welch CI]" if any("[" in c for col in out[1::2] for c in col.cells) else "")
                 + (", (range of the seed pairs' differences: too few seeds for an interval)" if pairs else "")
                 + "."]


def other_columns(table: pd.DataFrame, labels: list[str]) -> list[Column]:
    """Figures of no known group: `format_table`'s strings, under their leaderboard labels."""
    shown = format_table(table)
    out = []
    for col in labels:
        name = next((c for c in shown.columns if c == col or c.startswith(f"{col},")), None)
        if name is not None:
            out.append(Column(col, [str(v) for v in shown[name]]))
    return out
