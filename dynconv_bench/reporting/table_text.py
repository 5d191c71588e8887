"""Leaderboards as text for reading: each cell's value with its ratio or difference and interval, the headers that
say which way is better, the notes the cells need, and the one number formatter of every table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .leaderboard import BASELINE
from .marks import LEGACY_SPEED_NOTE, MIN_SEEDS, NO_REFERENCE_NOTE, SEEDS_NOTE


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Strings for reading: `value (ratio x)`; accuracy `mean ± std (n=..)` and `+pts [CI]*`; missing `-`.

    The header of a column with ratios says which way is better (latency's ratio is a speed-up).
    """
    baseline = table.attrs.get("baseline", BASELINE)
    higher = table.attrs.get("higher_is_better", {})
    shown = pd.DataFrame(index=table.index)
    notes: dict[str, None] = {}  # what the cells show beyond the report's note (older rows, few seeds)
    for col, compare in table.attrs.get("compare", {}).items():
        vals = table[col]
        marks = ["" if not isinstance(m, str) else m
                 for m in table.get(f"{col} marks", pd.Series(index=table.index, dtype=object))]
        if compare == "points":
            std, n = table[f"{col} std"], table[f"{col} n"]
            shown[col] = ["-" if pd.isna(m) else f"{m:.2f} ± {'-' if pd.isna(s) else f'{s:.2f}'} (n={int(k)}){mk}"
                          for m, s, k, mk in zip(vals, std, n, marks)]
            vs = f"{col} vs {baseline}"
            if f"{vs} (pts)" in table:
                nan = pd.Series(index=table.index, dtype=object)
                rows = zip(table.index, table[f"{vs} (pts)"], table[f"{vs} CI low"], table[f"{vs} CI high"],
                           table[f"{vs} significant"], table.get(f"{vs} seeds low", nan),
                           table.get(f"{vs} seeds high", nan))
                shown[f"{col} vs {baseline} (pts, 95% CI)"] = cells = [_difference(v == baseline, *r) for v, *r in rows]
                if any("seed pairs" in c for c in cells):
                    notes[SEEDS_NOTE.format(n=MIN_SEEDS)] = None
            continue
        ratio = table.get(f"{col} speed-up vs {baseline}" if compare == "speedup" else f"{col} vs {baseline}")
        if ratio is not None:
            way = "speed-up" if compare == "speedup" else f"{'higher' if higher.get(col, True) else 'lower'} is better"
            column = f"{col} speed-up vs {baseline}" if compare == "speedup" else f"{col} vs {baseline}"
            nan = pd.Series(index=table.index, dtype=float)
            ranges = [f", {lo:.2f}-{hi:.2f}" if pd.notna(lo) and pd.notna(hi) else ""
                      for lo, hi in zip(table.get(f"{column} low", nan), table.get(f"{column} high", nan))]
            measured = table.get(f"{column} measured", nan)  # absent: ratios of means (no in-cell timing)
            shown[f"{col}, x: {way}"] = [
                "-" if pd.isna(x) else f"{format_number(x)}{m}" if pd.isna(r) else
                f"{format_number(x)} (ref; A/A {a:.2f}{g}){m}" if v == baseline and pd.notna(a) else f"{format_number(x)} ({r:.2f}x{g}){m}"
                for v, x, r, a, m, g in zip(table.index, vals, ratio, measured, marks, ranges)]
            if "process min-max" in set(table.get(f"{column} interval", nan).dropna()):
                notes[LEGACY_SPEED_NOTE] = None
            if f"{column} measured" in table and f"{col} measured" not in table:
                notes[NO_REFERENCE_NOTE.format(col=col, b=baseline)] = None
        else:
            shown[col] = [format_number(x) + m if pd.notna(x) else "-" for x, m in zip(vals, marks)]
    shown.attrs["notes"] = list(notes)
    return shown


def _difference(is_baseline: bool, diff: float, low: Any, high: Any, significant: Any, seeds_low: Any = None,
                seeds_high: Any = None) -> str:
    if is_baseline or pd.isna(diff):
        return "-"
    if seeds_low is not None and pd.notna(seeds_low):  # too few seeds for a t interval: the seeds' own range
        return f"{diff:+.2f} (seed pairs {seeds_low:+.2f} to {seeds_high:+.2f})"
    if low is None or pd.isna(low):
        return f"{diff:+.2f}"
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]" + (" *" if significant else "")


def format_number(x: float | None, digits: int = 3) -> str:
    """A value for reading: `digits` significant figures below 1, thousands with a comma, `-` for missing."""
    if x is None or pd.isna(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.2f}"
