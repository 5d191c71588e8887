"""Leaderboards from the results store: per environment, one table per backbone, variants compared with static."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError, unknown_choice
from ..measures import get_kind, list_kinds, metric_spec, records_of
from ..metrics.env import environment_key
from .marks import LEGACY_SPEED_NOTE, MIN_SEEDS, NEAR_CHANCE_POINTS, NO_REFERENCE_NOTE, SEEDS_NOTE, cell_marks
from .stats import welch_interval

BASELINE = "static"


def load_results(store: Any, suite: str | None = None, current: bool = True) -> pd.DataFrame:
    """Rows of the store (a ResultStore or a path) for `suite`, one per cell, with status ok or failed.

    With `current` (the default), only each cell's rows of the code and config measured last: older ones are
    listed in `attrs["superseded"]` (reporting/sources.py), never pooled into a mean with newer ones.
    """
    from ..execution.store import ResultStore
    from .sources import current_rows

    own = not isinstance(store, ResultStore)
    db = ResultStore(store, readonly=True) if own else store
    try:
        suites = db.suites()
        if suite is not None and suite not in suites:
            raise unknown_choice("suite in the store", suite, suites) if suites else UserError(
                f"the results store {db.path} holds no results yet (run a suite first)")
        df = db.dataframe(suite=suite)
        df.attrs["malformed"] = list(db.malformed)  # row ids left out: their JSON did not decode
        df.attrs["claims"] = db.open_claims_of(suite)  # cells being measured now, or held by a stalled run
        return current_rows(df) if current else df
    finally:
        if own:
            db.close()


def default_suite(df: pd.DataFrame) -> str:
    """The suite of the most recently finished row."""
    if df.empty:
        raise UserError("the results store holds no results yet (run a suite first)")
    return str(df.sort_values("finished")["suite"].iloc[-1])


# the columns every long table has; each record's dimensions (device, batch_size, dataset, ...) add their own
_LONG_COLUMNS = ["backbone", "variant", "id", "environment_id", "run_id", "metric", "unit", "label", "compare",
                 "order", "higher_is_better", "value", "flags", "ratio", "ratio_low", "ratio_high", "device", "mode",
                 "batch_size", "dataset"]


def metric_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of the records of every ok row: one row per (metric, value, unit, dimensions); `id` is the row's."""
    out: list[dict[str, Any]] = []
    for row in df[df["status"] == "ok"].itertuples(index=False):
        env = environment_id(row.environment)
        for rec in records_of(row.kind, row.options, row.values):
            out.append({"backbone": row.backbone, "variant": row.variant, "id": row.id, "environment_id": env,
                        "run_id": getattr(row, "run_id", None), "metric": rec.metric, "unit": rec.unit,
                        "label": rec.label, "compare": rec.compare, "order": rec.order,
                        "higher_is_better": rec.higher_is_better, "value": rec.value, "flags": rec.flags,
                        "ratio": rec.ratio, "ratio_low": rec.ratio_range[0] if rec.ratio_range else None,
                        "ratio_high": rec.ratio_range[1] if rec.ratio_range else None, **dict(rec.dims)})
    dims = sorted({k for row in out for k in row} - set(_LONG_COLUMNS))
    return pd.DataFrame.from_records(out, columns=_LONG_COLUMNS + dims)


# -- environments ---------------------------------------------------------------------------------
def environment_id(env: dict[str, Any] | None) -> str:
    """A short stable name of the environment key of a row (same key, same id)."""
    text = json.dumps(environment_key(env), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def describe_environment(env: dict[str, Any] | None) -> str:
    """The environment key in words (fields not recorded are left out)."""
    env = env if isinstance(env, dict) else {}
    parts = []
    host = ("cluster", "Ray cluster of {}") if env.get("cluster") else ("host", "host {}")  # rows of many nodes
    for key, text in (host, ("cpu_model", "CPU {}"), ("threads", "{} torch threads by default"),
                      ("gpu", "GPU {}"), ("torch", "torch {}"), ("timm", "timm {}"), ("allocator", "malloc {}")):
        if key in env and (key != "allocator" or env[key] is not None):
            parts.append(text.format("none" if env[key] is None else env[key]))
    return ", ".join(parts) or "environment not recorded"


@dataclass(frozen=True)
class Section:
    """The rows measured in one environment (those a leaderboard may compare)."""

    environment_id: str
    environment: dict[str, Any] | None
    rows: pd.DataFrame


def environment_sections(df: pd.DataFrame) -> list[Section]:
    """The rows of `df` split by environment key, the environment of the latest finished row first."""
    if df.empty:
        return []
    ids = [environment_id(e) for e in df["environment"]]
    latest = df.assign(_env=ids, _finished=df["finished"].fillna("")).groupby("_env")["_finished"].max()
    out = []
    for env in sorted(latest.index, key=lambda e: latest[e], reverse=True):
        rows = df[[i == env for i in ids]]
        out.append(Section(env, rows["environment"].iloc[-1], rows))
    return out


# -- leaderboards ---------------------------------------------------------------------------------
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
    base = values.get(baseline)
    if compare == "points":
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
    elif compare in ("ratio", "speedup"):
        column = f"{label} speed-up vs {baseline}" if compare == "speedup" else f"{label} vs {baseline}"
        ratio = _ratios(sub, baseline)  # measured inside each cell (interleaved timing) where every row has one
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
    marks = cell_marks(sub, baseline)
    if marks:
        table[f"{label} marks"] = pd.Series(marks, dtype=object).reindex(table.index)


def near_chance(top1: Sequence[float], chance: float, points: float = NEAR_CHANCE_POINTS) -> bool:
    """True when the mean top-1 is within `points` of chance, or its 95% t interval over seeds reaches chance."""
    from .stats import t_quantile

    mean = statistics.fmean(top1)
    if mean - chance < points:
        return True
    if len(top1) < 2:
        return False
    half = t_quantile(0.975, len(top1) - 1) * statistics.stdev(top1) / len(top1) ** 0.5
    return mean - half <= chance


def _ratios(sub: pd.DataFrame, baseline: str) -> pd.Series | None:
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




def environment_summary(df: pd.DataFrame) -> str:
    """One line on the rows' environment: its key, the torch threads each kind of cell ran with, the commits."""
    sections = environment_sections(df)
    if not sections:
        return "environment: not recorded"
    if len(sections) > 1:
        return f"{len(sections)} environments: " + "; ".join(
            f"{s.environment_id} ({describe_environment(s.environment)})" for s in sections)
    env = sections[0].environment if isinstance(sections[0].environment, dict) else {}
    text = f"environment {sections[0].environment_id}: {describe_environment(env)}"
    ok = df[df["status"] == "ok"]
    per_kind = {}
    for kind, part in ok.groupby("kind", sort=False):
        threads = sorted({t for t in map(threads_of, part["options"], part["values"]) if t})
        if threads:
            per_kind[kind] = "/".join(map(str, threads))
    if per_kind:
        text += "; cells ran with torch threads: " + ", ".join(f"{k} {v}" for k, v in per_kind.items())
    commits = {}
    for e in df["environment"]:
        if isinstance(e, dict) and e.get("git_commit"):
            commits[str(e["git_commit"])[:7] + ("+dirty" if e.get("git_dirty") else "")] = None
    if commits:
        text += f"; commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
    return text


def chance_levels(df: pd.DataFrame) -> dict[str, float]:
    """Top-1 of guessing (100 / classes) per dataset of the accuracy rows, where the classes are recorded."""
    long = metric_rows(df)
    chance = long[long["metric"] == "chance"]
    return {str(d): float(v) for d, v in chance.groupby("dataset")["value"].max().items()}


def threads_of(options: dict[str, Any] | None, values: dict[str, Any] | None) -> int | None:
    """The torch thread count a cell ran with: measured (values) or requested (options)."""
    for source in (values or {}, options or {}):
        if isinstance(source, dict) and source.get("threads"):
            return int(source["threads"])
    return None


def kind_notes(df: pd.DataFrame) -> list[str]:
    """The notes the measurement kinds make on these rows (e.g. schedules, conversions that did nothing)."""
    kinds = set(df["kind"]) if not df.empty else set()
    return [n for k in list_kinds() if k in kinds for n in [get_kind(k).note(df)] if n]


def kind_sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """The extra sections the measurement kinds add (title, table, note), e.g. deployability."""
    kinds = set(df["kind"]) if not df.empty else set()
    return [s for k in list_kinds() if k in kinds for s in [get_kind(k).section(df)] if s is not None]


def failures(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] != "ok"][["backbone", "variant", "kind", "options", "error"]]


@dataclass(frozen=True)
class Part:
    """The leaderboards of one environment section, its footer line and the chance levels of its datasets."""

    section: Section
    boards: dict[str, pd.DataFrame]
    env: str
    chance: dict[str, float]

    def footer(self) -> str:
        chance = ", ".join(f"{d} {v:.2f}%" for d, v in self.chance.items())
        return self.env + (f". Chance top-1 (100 / classes): {chance}" if chance else "")


@dataclass(frozen=True)
class Report:
    """Everything a format renders: the title, one Part per environment (latest first), failures, the sections
    the measurement kinds add, the figures to place (HTML, LaTeX) and the suites they may come from."""

    title: str
    suite: str | None
    parts: list[Part]
    fails: pd.DataFrame
    sections: list[tuple[str, pd.DataFrame, str]]
    images: Sequence[Path] = ()
    suites: Sequence[str] = ()

    def mixed_note(self) -> str:
        return (f"The rows of this suite were measured in {len(self.parts)} environments (host, CPU model, threads, "
                f"GPU, torch, timm); each section compares only rows of one environment, latest first.")


def build_report(df: pd.DataFrame, suite: str | None = None, images: Sequence[Path] = ()) -> Report:
    """The report of `df` (rows of one suite): leaderboards per environment, notes, failures.

    Only each cell's rows of its latest code and config are shown (reporting/sources.py); a section lists the rest.
    """
    from .sources import current_rows, superseded_section

    df = current_rows(df)  # rows from load_results are already current: this leaves out nothing more
    parts = [Part(s, leaderboards(s.rows), environment_summary(s.rows), chance_levels(s.rows))
             for s in environment_sections(df)]
    suites = list(dict.fromkeys(df["suite"])) if "suite" in df else []
    title = f"dynconv-bench leaderboard: suite {suite or ', '.join(suites)}"
    superseded = superseded_section(df)
    return Report(title, suite, parts, failures(df), kind_sections(df) + ([superseded] if superseded else []),
                  images, suites)


def render(df: pd.DataFrame, fmt: str = "md", suite: str | None = None, images: Sequence[Path] = ()) -> str:
    """The leaderboards of `df` (rows of one suite), one section per environment, in a registered format
    (`reporting.formats`: md, csv, json, latex, html)."""
    from .formats import get_format

    renderer = get_format(fmt).renderer()
    return renderer(build_report(df, suite, images))


def write_report(df: pd.DataFrame, out_dir: str | Path, formats: Sequence[str] | None = None,
                 suite: str | None = None, images: Sequence[Path] = ()) -> list[Path]:
    """Write `leaderboard.<suffix>` files into `out_dir` (every registered format by default); return their paths."""
    from ..files import write_atomic
    from .formats import get_format, loaded_formats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats or loaded_formats():
        path = out / f"leaderboard.{get_format(fmt).suffix}"
        write_atomic(path, render(df, fmt, suite, images))
        paths.append(path)
    return paths
