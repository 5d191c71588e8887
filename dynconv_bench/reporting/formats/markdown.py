"""Markdown: one table per backbone (per environment when there are several), notes under each, failures last."""

from __future__ import annotations

from typing import Any

from ..environments import describe_environment
from ..escape import md_frame, md_label, md_text
from ..leaderboard import BASELINE
from ..marks import NOTE, mark_notes
from ..report import Report, kind_notes
from ..table_text import format_table

SUFFIX = "md"
HELP = "Markdown tables, one per backbone, with notes"
NOTES = True  # `report` appends the store's notes (sources, superseded rows, concurrency, claims)


def render_comparison(df: Any, run_a: str, run_b: str) -> str:
    """`report --compare`: a Markdown table of the cells of two runs."""
    from ..history import render_comparison as table

    return table(df, run_a, run_b)


def render(report: Report) -> str:
    lines = [f"# {md_text(report.title)}", ""]
    parts = report.parts
    if len(parts) > 1:
        lines += [report.mixed_note(), ""]
    for p in parts:
        level = "##"
        if len(parts) > 1:
            lines += [f"## Environment {p.section.environment_id}: "
                      f"{md_text(describe_environment(p.section.environment))}", ""]
            level = "###"
        for b, t in p.boards.items():
            shown = format_table(t)
            lines += [f"{level} {md_text(b)}", "", md_frame(shown).to_markdown(), ""]
            for note in mark_notes(shown) + kind_notes(p.section.rows[p.section.rows["backbone"] == b]):
                lines += [md_text(note, code=True), ""]
        lines += [md_text(p.footer()), ""]
    for title, table, note in report.sections:
        lines += [f"## {md_text(title)}", "", md_frame(table).to_markdown(), "", md_text(note), ""]
    if any(p.boards for p in parts):  # no ratio note under a report with no leaderboard (deploy only)
        lines.append(NOTE.format(b=BASELINE))
    if not report.fails.empty:
        lines += ["", f"{len(report.fails)} failed cell(s):"]
        lines += [f"- {md_label(r.cell)}: {md_text(r.error)}"
                  for r in report.fails.itertuples()]
    return "\n".join(lines) + "\n"
