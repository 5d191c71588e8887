"""The report a format renders: per environment the leaderboards, their footer and chance levels, the failures
and the sections the measurement kinds add; rendered in a registered format (`reporting.formats`) or written
to files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..execution.cell import cell_label
from ..measures import get_kind, list_kinds
from .environments import Section, environment_sections, environment_summary
from .leaderboard import leaderboards
from .rows import chance_levels


def kind_notes(df: pd.DataFrame) -> list[str]:
    """The notes the measurement kinds make on these rows (e.g. schedules, conversions that did nothing)."""
    kinds = set(df["kind"]) if not df.empty else set()
    return [n for k in list_kinds() if k in kinds for n in [get_kind(k).note(df)] if n]


def kind_sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """The extra sections the measurement kinds add (title, table, note), e.g. deployability."""
    kinds = set(df["kind"]) if not df.empty else set()
    return [s for k in list_kinds() if k in kinds for s in [get_kind(k).section(df)] if s is not None]


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that failed: their cell (labelled as the runner names it, e.g. `b/v/accuracy[dataset=x,seed=2]`),
    its parts and the error."""
    out = df[df["status"] != "ok"][["backbone", "variant", "kind", "options", "error"]].copy()
    out.insert(0, "cell", [cell_label(r.backbone, r.variant, r.kind, r.options if isinstance(r.options, dict) else {})
                           for r in out.itertuples()])
    return out


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
