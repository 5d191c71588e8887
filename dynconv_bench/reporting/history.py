"""Across runs: the headline value of each cell in two runs and their ratio; cells timed beside another run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import UserError, unknown_choice
from ..execution.cell import Cell
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
    """Cells measured ok in both runs: headline value in each (in `unit`) and the ratio B / A.

    A cell is matched by (backbone, variant, kind, options): not by its config hash, which holds a plugin's
    source, so that a run before and one after an edit of the plugin compare. `source A` / `source B` name the
    code each side measured (reporting/sources.py), `source differs` says when they are not the same code,
    `config differs` when the same code ran another config, and `config change` names the recorded config keys
    (defaults filled in) that differ.
    """
    from .sources import config_change, describe_source, row_source, source_key

    a, b = resolve_run(store, run_a), resolve_run(store, run_b)
    rows = {run: {_compare_key(r): r for r in store.rows(run_id=run, status="ok")} for run in (a, b)}
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
        sa, sb = (row_source(r["environment"]) for r in (ra, rb))
        ca, cb = (r["environment"].get("variant_config") if isinstance(r["environment"], dict) else None
                  for r in (ra, rb))
        same = source_key(sa) == source_key(sb)
        out.append({"suite": ra["suite"], "cell": Cell.from_dict(ra).label(), "metric": name, "unit": unit,
                    "A": va * scale, "B": vb * scale, "B / A": vb / va if va else float("nan"), "better": better,
                    "variant": ra["variant"], "source A": describe_source(sa), "source B": describe_source(sb),
                    "source differs": not same, "config differs": same and ra["config_hash"] != rb["config_hash"],
                    "config change": config_change(ca if isinstance(ca, dict) else None,
                                                   cb if isinstance(cb, dict) else None)})
    if not out:
        raise UserError(f"runs {a} and {b} have no cell measured ok in both")
    return pd.DataFrame(out)


def _compare_key(row: dict) -> tuple:
    """What matches a cell across runs: backbone, variant label, kind and options (the seed included)."""
    return (row["backbone"], row["variant"], row["kind"], row["options_hash"])


def render_comparison(df: pd.DataFrame, run_a: str, run_b: str) -> str:
    """A markdown table of `compare_runs`: values rounded, with their units; then a line per change of code."""
    from .escape import md_text
    from .table_text import format_number

    lines = [f"# runs {run_a} (A) vs {run_b} (B)", "", "| cell | metric | A | B | B / A | better |",
             "|---|---|---:|---:|---:|---|"]
    for r in df.to_dict("records"):
        a, b = (f"{format_number(r[k])} {r['unit']}".strip() for k in ("A", "B"))
        lines.append(f"| {r['cell']} | {r['metric']} | {a} | {b} | {r['B / A']:.3f}x | {r['better'] or '-'} |")
    changes: dict[tuple, list[str]] = {}
    for r in df.to_dict("records"):
        if r.get("source differs"):
            key = (f"source differs: {r['source A']} -> {r['source B']}", r.get("config change") or "")
        elif r.get("config differs"):
            key = ("config differs", r.get("config change") or "")
        else:
            continue
        variants = changes.setdefault(key, [])
        if r["variant"] not in variants:
            variants.append(r["variant"])
    if changes:
        lines.append("")
    for (head, change), variants in changes.items():
        detail = f" (defaults or config changed: {change})" if change else ""
        lines.append(md_text(f"{head}{detail}, for {', '.join(variants)}: B / A compares two versions of the code "
                             f"or config") if head != "config differs" else
                     md_text(f"{head}{detail}, for {', '.join(variants)}: B / A compares two configs"))
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
    """A line per variant whose code is not built in: the plugin file and its sha256, or the package and version,
    of the rows shown (reporting/sources.py leaves rows of older code out). Where the rows shown come from several
    versions (a backbone not measured since the plugin changed), the older ones are named with their backbones."""
    from .sources import shown_sources

    lines = []
    for variant, found in sorted(shown_sources(df).items()):
        (src, backbones, _), older = found[0], found[1:]
        line = f"note: variant {variant} comes from {_where(src)}"
        if older:
            line += f" on {', '.join(backbones)}" + "".join(
                f"; {', '.join(b)} show{'s' if len(b) == 1 else ''} rows of an older version, {_where(s)}, measured "
                f"{str(f)[:16].replace('T', ' ') or 'at an unrecorded time'}" for s, b, f in older)
            line += ": rerun the suite to measure those with the current code"
        lines.append(line)
    return "\n".join(lines) or None


def _where(src: dict) -> str:
    if src.get("from") == "plugin file":
        return f"plugin file {src.get('path')} (sha256 {str(src.get('sha256'))[:12]})"
    if src.get("from") == "entry point":
        return f"package {src.get('package')} {src.get('version')}"
    return f"module {src.get('module')}"
