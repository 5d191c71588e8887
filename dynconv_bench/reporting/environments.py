"""The environments of the rows: a short stable id per environment key, the key in words, the rows split by
environment (a leaderboard compares one) and the one-line summary a report prints under its tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..metrics.env import environment_key


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


def threads_of(options: dict[str, Any] | None, values: dict[str, Any] | None) -> int | None:
    """The torch thread count a cell ran with: measured (values) or requested (options)."""
    for source in (values or {}, options or {}):
        threads = source.get("threads") if isinstance(source, dict) else None
        if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
            return threads  # anything else (a row edited outside dynconv-bench) says nothing about threads
    return None
