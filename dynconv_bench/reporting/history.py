"""Across runs: the headline value of each cell in two runs and their ratio; cells timed beside another run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import UserError, unknown_choice
from ..execution.suite import KEY_FIELDS, Cell
from ..measures import get_kind, list_kinds


def resolve_run(store: Any, run: str) -> str:
    """A run id from an id or a unique prefix of one; UserError naming the runs otherwise."""
    ids = [r["run_id"] for r in store.runs()]
    if run in ids:
        return run
    matches = [i for i in ids if i.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if not ids:
        raise UserError(f"the results store {store.path} holds no runs yet")
    raise unknown_choice("run", run, ids)


def compare_runs(store: Any, run_a: str, run_b: str) -> pd.DataFrame:
    """Cells measured ok in both runs: headline value in each (in `unit`) and the ratio B / A (same cell key)."""
    a, b = resolve_run(store, run_a), resolve_run(store, run_b)
    rows = {run: {tuple(r[f] for f in KEY_FIELDS): r for r in store.rows(run_id=run, status="ok")} for run in (a, b)}
    out = []
    for key, ra in rows[a].items():
        rb = rows[b].get(key)
        if rb is None:
            continue
        if ra["kind"] not in list_kinds() or not get_kind(ra["kind"]).headline:
            continue
        kind = get_kind(ra["kind"])
        va, vb = (kind.headline_of(r["values"]) for r in (ra, rb))
        if va is None or vb is None:
            continue
        name, unit, scale, higher = kind.headline_shown
        better = {True: "higher", False: "lower"}.get(higher, "")
        out.append({"suite": ra["suite"], "cell": Cell.from_dict(ra).label(), "metric": name, "unit": unit,
                    "A": va * scale, "B": vb * scale, "B / A": vb / va if va else float("nan"), "better": better})
    if not out:
        raise UserError(f"runs {a} and {b} have no cell measured ok in both")
    return pd.DataFrame(out)


def render_comparison(df: pd.DataFrame, run_a: str, run_b: str) -> str:
    """A markdown table of `compare_runs`: values rounded, with their units."""
    from .report import _num

    lines = [f"# runs {run_a} (A) vs {run_b} (B)", "", "| cell | metric | A | B | B / A | better |",
             "|---|---|---:|---:|---:|---|"]
    for r in df.to_dict("records"):
        a, b = (f"{_num(r[k])} {r['unit']}".strip() for k in ("A", "B"))
        lines.append(f"| {r['cell']} | {r['metric']} | {a} | {b} | {r['B / A']:.3f}x | {r['better'] or '-'} |")
    return "\n".join(lines) + "\n"


def concurrency_note(df: pd.DataFrame) -> str | None:
    """A line naming timed cells that were measured while another run measured on the same store."""
    hits = [f"{r.backbone}/{r.variant}/{r.kind}" for r in df.itertuples(index=False)
            if r.kind in list_kinds() and get_kind(r.kind).timed and isinstance(r.environment, dict) and r.environment.get("concurrent_runs")]
    if not hits:
        return None
    return (f"note: {len(hits)} timed cell(s) were measured while another run used the machine, their times may "
            f"be slower: {', '.join(sorted(set(hits))[:8])}{' ...' if len(set(hits)) > 8 else ''}")


def claims_note(df: pd.DataFrame, suite: str) -> str | None:
    """Lines naming the cells of `suite` another run holds: being measured, or held by a run whose heartbeat stopped."""
    claims = [c for c in df.attrs.get("claims", []) if c["suite"] == suite]
    if not claims:
        return None
    lines = []
    for c in claims:
        state = (f"being measured by run {c['owner']}" if c["alive"] else
                 f"claimed by run {c['owner']}, whose heartbeat stopped {c['age_s']:.0f} s ago (stalled or dead): "
                 "rerun the suite to take it over")
        lines.append(f"note: {c['backbone']}/{c['variant']}/{c['kind']} has no result yet: {state}")
    return "\n".join(lines)


def sources_note(df: pd.DataFrame) -> str | None:
    """A line per variant whose code is not built in: the plugin file and its sha256, or the package and version."""
    seen: dict[str, str] = {}
    for r in df.itertuples(index=False):
        src = r.environment.get("variant_source") if isinstance(r.environment, dict) else None
        if isinstance(src, dict) and src.get("from") not in (None, "built-in"):
            where = (f"plugin file {src.get('path')} (sha256 {str(src.get('sha256'))[:12]})"
                     if src.get("from") == "plugin file" else
                     f"package {src.get('package')} {src.get('version')}" if src.get("from") == "entry point" else
                     f"module {src.get('module')}")
            seen.setdefault(r.variant, where)
    return "\n".join(f"note: variant {v} comes from {w}" for v, w in sorted(seen.items())) or None
