"""Numeric leaderboards: per backbone one table of ONE environment's rows, variants as rows, each metric beside its
comparison with the baseline (accuracy: spread over seeds and the difference in points with its interval; speed:
reporting/speed_ratios.py)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import UserError
from ..measures import metric_spec
from .environments import describe_environment, environment_sections
from .marks import MIN_SEEDS, NEAR_CHANCE_POINTS, cell_marks
from .rows import metric_rows
from .speed_ratios import add_speed_columns
from .stats import t_quantile, welch_interval

BASELINE = "static"


def leaderboards(df: pd.DataFrame, baseline: str = BASELINE) -> dict[str, pd.DataFrame]:
    """One numeric table per backbone of rows from ONE environment: variants as rows.

    Each metric is followed by its ratio to `baseline` (`... vs static`; latency by the speed-up, `baseline`'s
    latency over the row's: `... speed-up vs static`). Accuracy holds the mean
    over seeds with `... std` (NaN for one seed) and `... n`, then the difference of means to the
    baseline in points with its 95% Welch interval (`... CI low`, `... CI high`, `... significant`).
    Rows from several environments are refused: their ratios would compare machines, not variants.
    """
    sections = environment_sections(df)
    if len(sections) > 1:
        a, b = sections[0], sections[1]
        raise UserError(
            f"the rows come from {len(sections)} environments and one leaderboard compares one: "
            f"{a.environment_id} ({describe_environment(a.environment)}) and {b.environment_id} "
            f"({describe_environment(b.environment)}); report each of environment_sections() apart")
    long = metric_rows(df)
    chance = long[long["metric"] == "chance"].groupby("dataset")["value"].max().to_dict()
    long = long[long["metric"].map(lambda m: metric_spec(m).in_leaderboard).astype(bool)]
    out: dict[str, pd.DataFrame] = {}
    for backbone in dict.fromkeys(df["backbone"]):
        part = long[long["backbone"] == backbone]
        if part.empty:
            continue
        variants = list(dict.fromkeys(df[df["backbone"] == backbone]["variant"]))
        if baseline in variants:
            variants.remove(baseline)
            variants.insert(0, baseline)
        table = pd.DataFrame(index=pd.Index(variants, name="variant"))
        compare: dict[str, str] = {}
        higher: dict[str, bool] = {}
        for label, sub in sorted(part.groupby("label", sort=False), key=lambda kv: (kv[1]["order"].iloc[0], kv[0])):
            compare[label], higher[label] = sub["compare"].iloc[0], bool(sub["higher_is_better"].iloc[0])
            _add_metric(table, label, sub, compare[label], baseline, chance)
        table.attrs.update(baseline=baseline, compare=compare, higher_is_better=higher)
        out[backbone] = table
    return out


def _add_metric(table: pd.DataFrame, label: str, sub: pd.DataFrame, compare: str, baseline: str,
                chance: dict[Any, float]) -> None:
    values = {v: g.tolist() for v, g in sub.groupby("variant")["value"]}
    mean = pd.Series({v: statistics.fmean(x) for v, x in values.items()}).reindex(table.index)
    table[label] = mean
    if compare == "points":
        _add_accuracy(table, label, sub, baseline, chance, values)
        if baseline not in values:
            return
    elif compare in ("ratio", "speedup"):
        add_speed_columns(table, label, sub, compare, baseline, values, mean)
    marks = cell_marks(sub, baseline)
    if marks:
        table[f"{label} marks"] = pd.Series(marks, dtype=object).reindex(table.index)


def _add_accuracy(table: pd.DataFrame, label: str, sub: pd.DataFrame, baseline: str, chance: dict[Any, float],
                  values: dict[Any, list[float]]) -> None:
    """The columns of a metric compared in points (top-1): marks, spread over seeds, the difference to `baseline`."""
    base = values.get(baseline)
    level = chance.get(sub["dataset"].iloc[0]) if "dataset" in sub else None
    near = {v: near_chance(x, level) for v, x in values.items()} if level is not None else {}
    if any(near.values()):
        table[f"{label} marks"] = pd.Series({v: "†" if n else "" for v, n in near.items()},
                                            dtype=object).reindex(table.index)
    published = {v for v, f in sub.groupby("variant")["flags"] if any("published" in (x or ()) for x in f)}
    if published:  # evaluated from a release's published weights (the accuracy kind's checkpoint mode)
        old = table.get(f"{label} marks", pd.Series(index=table.index, dtype=object))
        table[f"{label} marks"] = pd.Series(
            {v: (old[v] if isinstance(old[v], str) else "") + (" (published weights)" if v in published else "")
             for v in table.index}, dtype=object)
    table[f"{label} std"] = pd.Series({v: statistics.stdev(x) if len(x) > 1 else float("nan")
                                       for v, x in values.items()}).reindex(table.index)
    table[f"{label} n"] = pd.Series({v: len(x) for v, x in values.items()}).reindex(table.index)
    table[f"{label} min"] = pd.Series({v: min(x) for v, x in values.items()}).reindex(table.index)
    table[f"{label} max"] = pd.Series({v: max(x) for v, x in values.items()}).reindex(table.index)
    if base is None:
        return
    # a t interval needs MIN_SEEDS seeds a side (over 2 it spans about +-8 points and may pass 100%): with fewer,
    # the range of the seed-by-seed differences (min-max), not an interval
    diffs = {v: welch_interval(x, base) if min(len(x), len(base)) >= MIN_SEEDS else
             dataclasses.replace(welch_interval(x, base), low=None, high=None, df=None)
             for v, x in values.items() if v != baseline}
    for end, get in (("low", lambda x: min(x) - max(base)), ("high", lambda x: max(x) - min(base))):
        table[f"{label} vs {baseline} seeds {end}"] = pd.Series(
            {v: get(x) if min(len(x), len(base)) < MIN_SEEDS and max(len(x), len(base)) > 1 else None
             for v, x in values.items() if v != baseline}, dtype=object).reindex(table.index)
    table[f"{label} vs {baseline} (pts)"] = pd.Series(
        {baseline: 0.0, **{v: d.diff for v, d in diffs.items()}}).reindex(table.index)
    for col, get in (("CI low", lambda d: d.low), ("CI high", lambda d: d.high),  # None: no interval
                     ("significant", lambda d: None if d.low is None else d.significant)):
        table[f"{label} vs {baseline} {col}"] = pd.Series(
            {v: get(d) for v, d in diffs.items()}, dtype=object).reindex(table.index)


def near_chance(top1: Sequence[float], chance: float, points: float = NEAR_CHANCE_POINTS) -> bool:
    """True when the mean top-1 is within `points` of chance, or its 95% t interval over seeds reaches chance."""
    mean = statistics.fmean(top1)
    if mean - chance < points:
        return True
    if len(top1) < 2:
        return False
    half = t_quantile(0.975, len(top1) - 1) * statistics.stdev(top1) / len(top1) ** 0.5
    return mean - half <= chance
