"""Leaderboards from the results store: per environment, one table per backbone, variants compared with static."""

from __future__ import annotations

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
from .stats import welch_interval

FORMATS = ("md", "csv", "json", "html")
BASELINE = "static"


def load_results(store: Any, suite: str | None = None) -> pd.DataFrame:
    """Rows of the store (a ResultStore or a path) for `suite`, one per cell, with status ok or failed."""
    from ..execution.store import ResultStore

    own = not isinstance(store, ResultStore)
    db = ResultStore(store, readonly=True) if own else store
    try:
        suites = db.suites()
        if suite is not None and suite not in suites:
            raise unknown_choice("suite in the store", suite, suites) if suites else UserError(
                f"the results store {db.path} holds no results yet (run a suite first)")
        df = db.dataframe(suite=suite)
        df.attrs["malformed"] = list(db.malformed)  # row ids left out: their JSON did not decode
        return df
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
                 "order", "higher_is_better", "value", "flags", "ratio", "device", "mode", "batch_size", "dataset"]


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
                        "ratio": rec.ratio, **dict(rec.dims)})
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
    for key, text in (("host", "host {}"), ("cpu_model", "CPU {}"), ("threads", "{} torch threads by default"),
                      ("gpu", "GPU {}"), ("torch", "torch {}"), ("timm", "timm {}")):
        if key in env:
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
            _add_metric(table, label, sub, compare[label], baseline)
        table.attrs.update(baseline=baseline, compare=compare, higher_is_better=higher)
        out[backbone] = table
    return out


def _add_metric(table: pd.DataFrame, label: str, sub: pd.DataFrame, compare: str, baseline: str) -> None:
    values = {v: g.tolist() for v, g in sub.groupby("variant")["value"]}
    mean = pd.Series({v: statistics.fmean(x) for v, x in values.items()}).reindex(table.index)
    table[label] = mean
    base = values.get(baseline)
    if compare == "points":
        table[f"{label} std"] = pd.Series({v: statistics.stdev(x) if len(x) > 1 else float("nan")
                                           for v, x in values.items()}).reindex(table.index)
        table[f"{label} n"] = pd.Series({v: len(x) for v, x in values.items()}).reindex(table.index)
        if base is None:
            return
        diffs = {v: welch_interval(x, base) for v, x in values.items() if v != baseline}
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
        elif base is not None and statistics.fmean(base) != 0:
            table[column] = statistics.fmean(base) / mean if compare == "speedup" else mean / statistics.fmean(base)
    marks = _marks(sub, baseline)
    if marks:
        table[f"{label} marks"] = pd.Series(marks, dtype=object).reindex(table.index)


def _ratios(sub: pd.DataFrame, baseline: str) -> pd.Series | None:
    """Ratios to the baseline measured inside each cell (interleaved timing), when every row has one."""
    if sub["ratio"].isna().any():
        return None
    return sub.groupby("variant")["ratio"].mean()


def _marks(sub: pd.DataFrame, baseline: str) -> dict[str, str]:
    """Per variant: `!` measured under load; `~` a timed value whose ratio compares rows of different runs."""
    out: dict[str, str] = {}
    base_runs = set(sub[sub["variant"] == baseline]["run_id"].dropna())
    timed = metric_spec(sub["metric"].iloc[0]).timed
    for variant, rows in sub.groupby("variant"):
        mark = "!" if any("load" in (f or ()) for f in rows["flags"]) else ""
        own_runs = set(rows["run_id"].dropna())
        if (timed and variant != baseline and base_runs and own_runs and own_runs != base_runs
                and rows["ratio"].isna().any()):
            mark += "~"
        if mark:
            out[variant] = mark
    return out


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Strings for reading: `value (ratio x)`; accuracy `mean ± std (n=..)` and `+pts [CI]*`; missing `-`.

    The header of a column with ratios says which way is better (latency's ratio is a speed-up).
    """
    baseline = table.attrs.get("baseline", BASELINE)
    higher = table.attrs.get("higher_is_better", {})
    shown = pd.DataFrame(index=table.index)
    for col, compare in table.attrs.get("compare", {}).items():
        vals = table[col]
        if compare == "points":
            std, n = table[f"{col} std"], table[f"{col} n"]
            shown[col] = ["-" if pd.isna(m) else f"{m:.2f} ± {'-' if pd.isna(s) else f'{s:.2f}'} (n={int(k)})"
                          for m, s, k in zip(vals, std, n)]
            vs = f"{col} vs {baseline}"
            if f"{vs} (pts)" in table:
                rows = zip(table.index, table[f"{vs} (pts)"], table[f"{vs} CI low"], table[f"{vs} CI high"],
                           table[f"{vs} significant"])
                shown[f"{col} vs {baseline} (pts, 95% CI)"] = [_difference(v == baseline, *r) for v, *r in rows]
            continue
        ratio = table.get(f"{col} speed-up vs {baseline}" if compare == "speedup" else f"{col} vs {baseline}")
        marks = ["" if not isinstance(m, str) else m
                 for m in table.get(f"{col} marks", pd.Series(index=table.index, dtype=object))]
        if ratio is not None:
            way = "speed-up" if compare == "speedup" else f"{'higher' if higher.get(col, True) else 'lower'} is better"
            shown[f"{col}, x: {way}"] = [("-" if pd.isna(x) else f"{_num(x)} ({r:.2f}x){m}" if pd.notna(r)
                                          else f"{_num(x)}{m}") for x, r, m in zip(vals, ratio, marks)]
        else:
            shown[col] = [_num(x) + m if pd.notna(x) else "-" for x, m in zip(vals, marks)]
    return shown


def _difference(is_baseline: bool, diff: float, low: Any, high: Any, significant: Any) -> str:
    if is_baseline or pd.isna(diff):
        return "-"
    if low is None or pd.isna(low):
        return f"{diff:+.2f}"
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]" + (" *" if significant else "")


def _num(x: float) -> str:
    if pd.isna(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


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


NOTE = ("In brackets (x): the ratio to `{b}`; each header says which way is better, and latency's is the "
        "speed-up ({b}'s latency / the row's). Speed cells timed round-robin with `{b}` in one process "
        "(`interleave` rounds) show the median of their per-round ratios; other ratios compare rows measured in "
        "the same environment. `!`: measured while the 1-minute load average exceeded the core count by more than half a core; `~`: a "
        "timed ratio between rows of different runs. Accuracy: mean ± sample std over "
        "n seeds (std `-` for one seed); vs {b}: difference of means in points with its 95% confidence interval "
        "(Welch t over seeds), * where the interval excludes 0; no interval with fewer than 2 seeds a side.")


@dataclass(frozen=True)
class _Part:
    section: Section
    boards: dict[str, pd.DataFrame]
    env: str
    chance: dict[str, float]

    def footer(self) -> str:
        chance = ", ".join(f"{d} {v:.2f}%" for d, v in self.chance.items())
        return self.env + (f". Chance top-1 (100 / classes): {chance}" if chance else "")


def _parts(df: pd.DataFrame) -> list[_Part]:
    return [_Part(s, leaderboards(s.rows), environment_summary(s.rows), chance_levels(s.rows))
            for s in environment_sections(df)]



def render(df: pd.DataFrame, fmt: str = "md", suite: str | None = None, images: Sequence[Path] = ()) -> str:
    """The leaderboards of `df` (rows of one suite), one section per environment, as Markdown, CSV, JSON or HTML."""
    if fmt not in FORMATS:
        raise unknown_choice("report format", fmt, FORMATS)
    parts = _parts(df)
    title = f"dynconv-bench leaderboard: suite {suite or ', '.join(dict.fromkeys(df['suite']))}"
    fails = failures(df)
    if fmt == "csv":
        frames = [t.reset_index().assign(backbone=b, environment=p.section.environment_id)
                  for p in parts for b, t in p.boards.items()]
        if not frames:
            return ""
        full = pd.concat(frames, ignore_index=True)
        return full[["environment", "backbone"] + [c for c in full.columns if c not in ("environment", "backbone")]
                    ].to_csv(index=False)
    if fmt == "json":
        def boards(p: _Part) -> dict[str, Any]:
            return {b: json.loads(t.reset_index().to_json(orient="records")) for b, t in p.boards.items()}

        first = parts[0] if parts else None
        data = {"suite": suite, "baseline": BASELINE,
                "environment": first.footer() if first else "environment: not recorded",
                "leaderboards": boards(first) if first else {},
                "other_environments": [{"id": p.section.environment_id, "environment": p.footer(),
                                        "leaderboards": boards(p)} for p in parts[1:]],
                "failed": json.loads(fails.to_json(orient="records"))}
        for title_, table, _ in kind_sections(df):
            data[title_.lower()] = json.loads(table.reset_index().to_json(orient="records"))
        return json.dumps(data, indent=2)
    if fmt == "md":
        lines = [f"# {title}", ""]
        if len(parts) > 1:
            lines += [_mixed_note(parts), ""]
        for p in parts:
            level = "##"
            if len(parts) > 1:
                lines += [f"## Environment {p.section.environment_id}: "
                          f"{describe_environment(p.section.environment)}", ""]
                level = "###"
            for b, t in p.boards.items():
                lines += [f"{level} {b}", "", format_table(t).to_markdown(), ""]
                for note in kind_notes(p.section.rows[p.section.rows["backbone"] == b]):
                    lines += [note, ""]
            lines += [p.footer(), ""]
        for title_, table, note in kind_sections(df):
            lines += [f"## {title_}", "", table.to_markdown(), "", note, ""]
        if any(p.boards for p in parts):  # no ratio note under a report with no leaderboard (deploy only)
            lines.append(NOTE.format(b=BASELINE))
        if not fails.empty:
            lines += ["", f"{len(fails)} failed cell(s):"]
            lines += [f"- {r.backbone}/{r.variant}/{r.kind}: {r.error}" for r in fails.itertuples()]
        return "\n".join(lines) + "\n"
    return _html(title, parts, fails, images, kind_sections(df), list(dict.fromkeys(df["suite"])))


def _mixed_note(parts: list[_Part]) -> str:
    return (f"The rows of this suite were measured in {len(parts)} environments (host, CPU model, threads, GPU, "
            f"torch, timm); each section compares only rows of one environment, latest first.")


def _html(title: str, parts: list[_Part], fails: pd.DataFrame, images: Sequence[Path],
          sections: Sequence[tuple[str, pd.DataFrame, str]] = (), suites: Sequence[str] = ()) -> str:
    from .html_report import leaderboard_page  # it imports this module

    return leaderboard_page(title, parts, fails, images, sections, suites)


def write_report(df: pd.DataFrame, out_dir: str | Path, formats: Sequence[str] = FORMATS, suite: str | None = None,
                 images: Sequence[Path] = ()) -> list[Path]:
    """Write `leaderboard.<fmt>` files into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"leaderboard.{fmt}"
        path.write_text(render(df, fmt, suite, images))
        paths.append(path)
    return paths
