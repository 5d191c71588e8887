"""Which rows a report shows: per cell, only the rows of the code and config measured last.

A cell of a report is (suite, backbone, variant label, kind, options other than the seed). Its rows are told
apart by their identity: the source of the variant's code, as the runner records it in each row's environment
(`variant_source`: a plugin file's sha256, a package's version, or for a built-in the package version and the
git commit of this checkout, `+dirty` included), and the cell's config with the variant's defaults filled in
(`config_hash`). When a cell holds rows of several identities, the one whose newest row finished last is
current; the others are superseded: left out of every mean and listed by `superseded_note` /
`superseded_section`. A `+dirty` commit names no particular content: two dirty trees of one commit count as
one source.
"""

from __future__ import annotations

import json
from numbers import Integral
from typing import Any

import pandas as pd

from ..execution.cell import label_options

SEED_OPTIONS = ("seed",)  # options that are repetitions of one cell, pooled into one mean
_NEEDED = ("suite", "backbone", "variant", "kind", "options", "config_hash", "environment")


def row_source(env: Any) -> dict[str, Any]:
    """The source a row measured: its environment's `variant_source`, with the commit added for a built-in."""
    env = env if isinstance(env, dict) else {}
    src = env.get("variant_source")
    out: dict[str, Any] = dict(src) if isinstance(src, dict) else {"from": "not recorded"}
    if out.get("from") in ("built-in", "not recorded"):
        commit = env.get("git_commit")
        out["commit"] = (str(commit)[:12] + ("+dirty" if env.get("git_dirty") else "")) if commit else None
    return out


def source_key(src: dict[str, Any]) -> tuple:
    """What makes two sources the same code (a plugin file's path is left out: its content is what ran)."""
    kind = src.get("from")
    if kind == "plugin file":
        return (kind, src.get("sha256"))
    if kind == "entry point":
        return (kind, src.get("package"), src.get("version"))
    if kind == "module":
        return (kind, src.get("module"))
    if kind == "built-in":
        return (kind, src.get("package"), src.get("version"), src.get("commit"))
    return (str(kind), src.get("commit"))


def describe_source(src: dict[str, Any]) -> str:
    """A source in words: `plugin sha256 abc123456789 (plug.py)`, `package p 1.0`, `dynconv-bench 0.1.0 commit ...`."""
    kind = src.get("from")
    if kind == "plugin file":
        name = str(src.get("path") or "").rsplit("/", 1)[-1]
        return f"plugin sha256 {str(src.get('sha256'))[:12]}" + (f" ({name})" if name else "")
    if kind == "entry point":
        return f"package {src.get('package')} {src.get('version')}"
    if kind == "module":
        return f"module {src.get('module')}"
    commit = f" commit {src['commit']}" if src.get("commit") else " (commit not recorded)"
    if kind == "built-in":
        return f"{src.get('package')} {src.get('version')}{commit}"
    return f"source not recorded{commit if src.get('commit') else ''}"


def cell_of(row: Any) -> tuple:
    """A row's cell: (suite, backbone, variant label, kind, options other than the seed, as JSON)."""
    options = row.options if isinstance(row.options, dict) else {}
    rest = {k: v for k, v in options.items() if k not in SEED_OPTIONS}
    return (row.suite, row.backbone, row.variant, row.kind, json.dumps(rest, sort_keys=True, default=str))


def identity_of(row: Any) -> tuple:
    """A row's identity within its cell: the source of its code and its config (defaults filled in)."""
    return (source_key(row_source(row.environment)), row.config_hash)


def _config_of(row: Any) -> dict[str, Any] | None:
    env = row.environment if isinstance(row.environment, dict) else {}
    config = env.get("variant_config")
    return config if isinstance(config, dict) else None


def config_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """`key a -> b, ...` between two recorded configs (defaults filled in); '' when either is not recorded."""
    if old is None or new is None:
        return ""
    keys = sorted(set(old) | set(new))
    missing = "(none)"
    return ", ".join(f"{k} {old.get(k, missing)} -> {new.get(k, missing)}" for k in keys
                     if old.get(k, missing) != new.get(k, missing))


def _when(finished: Any) -> str:
    text = str(finished) if isinstance(finished, str) and finished else ""
    return text[:16].replace("T", " ") + " UTC" if text else "at an unrecorded time"


def _stamp(row: Any, pos: int) -> tuple[str, int, int]:
    """How late a row is: its finish time, then its row id (finish times are to the second), then its position."""
    finished, row_id = getattr(row, "finished", None), getattr(row, "id", None)
    return (finished if isinstance(finished, str) else "", int(row_id) if isinstance(row_id, Integral) else -1, pos)


def current_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of `df` of each cell's current identity; `attrs["superseded"]` lists the rows left out.

    Current: the identity (source, config) whose newest row finished last (ties: the row stored last). Calling it
    again on its result leaves out nothing more and keeps the list.
    """
    superseded = list(df.attrs.get("superseded", []))
    if df.empty or not set(_NEEDED) <= set(df.columns):
        out = df.copy()
        out.attrs = {**df.attrs, "superseded": superseded}
        return out
    rows = list(df.itertuples(index=False))
    cells = [cell_of(r) for r in rows]
    idents = [identity_of(r) for r in rows]
    newest: dict[tuple, dict[tuple, tuple]] = {}  # cell -> identity -> its newest row's (finished, id, position)
    members: dict[tuple, dict[tuple, list]] = {}  # cell -> identity -> its rows, oldest first
    for pos, (r, cell, ident) in enumerate(zip(rows, cells, idents)):
        stamp = _stamp(r, pos)
        per = newest.setdefault(cell, {})
        per[ident] = max(per.get(ident, stamp), stamp)
        members.setdefault(cell, {}).setdefault(ident, []).append((stamp, r))
    current = {cell: max(per, key=per.get) for cell, per in newest.items()}
    keep = [current[c] == i for c, i in zip(cells, idents)]
    for cell, per in newest.items():
        if len(per) < 2:
            continue
        shown_ident = current[cell]
        latest = max(members[cell][shown_ident], key=lambda t: t[0])[1]
        new_src, new_cfg = row_source(latest.environment), _config_of(latest)
        for ident in sorted((i for i in per if i != shown_ident), key=per.get):
            old = [r for _, r in sorted(members[cell][ident], key=lambda t: t[0])]
            old_src = row_source(old[-1].environment)
            finished = [f for r in old if isinstance(f := getattr(r, "finished", None), str)]
            superseded.append({
                "suite": cell[0], "backbone": cell[1], "variant": cell[2], "kind": cell[3],
                "options": label_options(json.loads(cell[4])), "rows": len(old),
                "failed": sum(getattr(r, "status", "ok") != "ok" for r in old), "source": describe_source(old_src),
                "measured": max(finished) if finished else None, "shown source": describe_source(new_src),
                "same source": ident[0] == shown_ident[0],
                "config change": config_change(_config_of(old[-1]), new_cfg),
                "ids": [int(i) for r in old if isinstance(i := getattr(r, "id", None), Integral)]})
    out = df[keep].copy()
    out.attrs = {**df.attrs, "superseded": superseded}
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The superseded records of the suites `df` shows (a suite's rows keep the store-wide list in attrs)."""
    suites = set(df["suite"]) if "suite" in df and not df.empty else None
    return [s for s in df.attrs.get("superseded", []) if suites is None or s["suite"] in suites]


def _what(rec: dict[str, Any]) -> tuple[str, str]:
    """(old, shown) in words: the sources, or the configs when only the config changed."""
    if rec["same source"]:
        change = f" ({rec['config change']})" if rec["config change"] else ""
        return f"{rec['source']} with an earlier config", f"the current config{change}"
    change = f"; defaults or config changed: {rec['config change']}" if rec["config change"] else ""
    return rec["source"], rec["shown source"] + change


def superseded_note(df: pd.DataFrame) -> str | None:
    """A line per variant and older source whose rows the tables leave out (never mixed into a mean)."""
    lines: dict[tuple, dict[str, Any]] = {}
    for rec in _records(df):
        old, new = _what(rec)
        entry = lines.setdefault((rec["variant"], old, new), {"rows": 0, "cells": 0, "measured": None})
        entry["rows"] += rec["rows"]
        entry["cells"] += 1
        if rec["measured"] and (entry["measured"] is None or rec["measured"] > entry["measured"]):
            entry["measured"] = rec["measured"]
    out = [f"superseded: {e['rows']} row{'s' if e['rows'] != 1 else ''} of {variant} from {old} measured "
           f"{_when(e['measured'])} (left out of every mean); the table shows {new}"
           for (variant, old, new), e in lines.items()]
    return "\n".join(out) or None


SECTION_TITLE = "Superseded rows"


def superseded_section(df: pd.DataFrame) -> tuple[str, pd.DataFrame, str] | None:
    """A report section listing the cells whose older rows the tables leave out, or None when there are none."""
    recs = _records(df)
    if not recs:
        return None
    table = pd.DataFrame([{"cell": f"{r['backbone']}/{r['variant']}/{r['kind']}" + (f"[{r['options']}]" if r["options"]
                                                                                   else ""),
                           "rows left out": r["rows"], "their source": _what(r)[0], "measured": _when(r["measured"]),
                           "the table shows": _what(r)[1]} for r in recs]).set_index("cell")
    note = ("Each cell shows only the rows of the code and config it measured last (a plugin file's sha256, a "
            "package's version, or a built-in's version and git commit; the config with its defaults filled in); "
            "the rows listed here were measured with an older one and are in no mean.")
    return SECTION_TITLE, table, note


def shown_sources(df: pd.DataFrame) -> dict[str, list[tuple[dict[str, Any], list[str], str]]]:
    """Per variant whose code is not built in: the sources of the rows shown, newest first, each with its
    backbones and the newest finish time of its rows."""
    found: dict[str, dict[tuple, list]] = {}
    for pos, r in enumerate(df.itertuples(index=False)):
        src = row_source(r.environment)
        if src.get("from") in ("built-in", "not recorded"):
            continue
        entry = found.setdefault(r.variant, {}).setdefault(source_key(src), [src, [], ("", -1, -1)])
        if r.backbone not in entry[1]:
            entry[1].append(r.backbone)
        stamp = _stamp(r, pos)
        entry[0], entry[2] = (src, stamp) if stamp >= entry[2] else (entry[0], entry[2])
    return {v: [(s, b, f[0]) for s, b, f in sorted(per.values(), key=lambda t: t[2], reverse=True)]
            for v, per in found.items()}
