"""The speed columns of a leaderboard: each row's ratio to the baseline measured inside its cell (interleaved
timing) with its interval, and speed figures scaled from the baseline's own measured value."""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd


def add_speed_columns(table: pd.DataFrame, label: str, sub: pd.DataFrame, compare: str, baseline: str,
                      values: dict[Any, list[float]], mean: pd.Series) -> None:
    """The columns of a metric compared as a ratio (`... vs static`) or a speed-up (latency: `... speed-up vs
    static`): in-cell ratios where every row has one (with `measured`, `low`, `high`, `interval`), else ratios of
    the means."""
    base = values.get(baseline)
    column = f"{label} speed-up vs {baseline}" if compare == "speedup" else f"{label} vs {baseline}"
    ratio = in_cell_ratios(sub, baseline)  # measured inside each cell (interleaved timing) where every row has one
    if ratio is not None:
        table[column] = ratio.reindex(table.index)
        table[f"{column} measured"] = sub.groupby("variant")["ratio"].mean().reindex(table.index)  # static: A/A
        if sub["ratio_low"].notna().any():  # the interval of each row's measured ratio
            for end in ("low", "high"):
                table[f"{column} {end}"] = sub.groupby("variant")[f"ratio_{end}"].mean().reindex(table.index)
            table[f"{column} interval"] = pd.Series(
                {v: None if g["ratio_low"].isna().all() else "process min-max" if any(
                    "process-range" in (f or ()) for f in g["flags"]) else "95% bootstrap"
                 for v, g in sub.groupby("variant")}, dtype=object).reindex(table.index)
        if baseline in values and statistics.fmean(values[baseline]) > 0:  # one reference: static's own cell
            ref = statistics.fmean(values[baseline])
            table[f"{label} measured"] = mean  # each row's own measured value, kept beside
            table[label] = scaled_speed(ref, table[column], compare)
    elif base is not None and statistics.fmean(base) != 0:
        table[column] = statistics.fmean(base) / mean if compare == "speedup" else mean / statistics.fmean(base)


def in_cell_ratios(sub: pd.DataFrame, baseline: str) -> pd.Series | None:
    """Ratios to the baseline measured inside each cell (interleaved timing), when every row has one.

    The baseline's is 1 by definition (the reference); its measured static-vs-static (A/A) ratio and interval,
    the noise floor of its cell, stay in the table's `... measured`, `low` and `high` columns."""
    if sub["ratio"].isna().any():
        return None
    out = sub.groupby("variant")["ratio"].mean()
    if baseline in out.index:
        out[baseline] = 1.0
    return out


def scaled_speed(reference: float, ratio: pd.Series, compare: str) -> pd.Series:
    """One consistent set of speed figures: each row's value from the baseline's own measured value (`reference`,
    its cell's throughput or latency) and the row's in-cell ratio: throughput x ratio, latency / speed-up. Sorting
    by the values then gives the order of the ratios."""
    ratio = ratio.where(ratio > 0)
    return reference / ratio if compare == "speedup" else reference * ratio
