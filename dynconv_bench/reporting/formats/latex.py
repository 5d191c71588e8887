"""LaTeX: what a paper uses. Per backbone one booktabs table per kind of figure (cost: params, MACs, MAC overhead,
peak memory; speed: the speed-ups over static per device and batch with their ranges, and the absolute img/s of
one batch size; accuracy: top-1 with its spread and the difference to static with its interval; other figures),
each a `table*` that fits the text width of a two-column paper (7 in): `\\footnotesize`, 4pt column separation, and
a table split in parts where its columns would not fit. Short headers with units; marks as superscripts explained
in one `\\footnotesize` line; the environment, the kinds' notes and the full meaning of each mark in LaTeX comments.
Figures (the PDF beside each PNG given) with their captions. A fragment to `\\input` into a document that loads
booktabs (and graphicx for figures).

The tables are built from the report's numeric leaderboards (`Report.parts[].boards`); figures of no known group
come from `format_table`'s strings.

The cells and their widths are in latex_cells.py, the columns of each group in latex_columns.py; this module fits
them to the page and writes the document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ...errors import UserError
from ..environments import describe_environment
from ..escape import latex_text, visible
from ..leaderboard import BASELINE
from ..report import Part, Report, kind_notes
from .latex_cells import BUDGET_PT, TABCOLSEP_PT, Column, comment, label, mark_note, prose
from .latex_columns import (
    GROUP_OF,
    GROUPS,
    accuracy_columns,
    column_info,
    cost_columns,
    other_columns,
    speed_columns,
)

SUFFIX = "tex"
HELP = "booktabs tables for a paper (\\input them; needs \\usepackage{booktabs})"


# -- tables -----------------------------------------------------------------------------------------------------
def split(columns: list[Column], first: Column, budget: float = BUDGET_PT) -> list[list[Column]]:
    """The columns in parts that fit `budget` (pt) beside the first (row label) column, in their order."""
    parts: list[list[Column]] = [[]]
    used = first.width
    for c in columns:
        if parts[-1] and used + c.width > budget:
            parts.append([])
            used = first.width
        parts[-1].append(c)
        used += c.width
    return parts


def tabular(first: Column, columns: list[Column]) -> str:
    """A booktabs tabular: the row label column, then `columns` right-aligned."""
    rows = [" & ".join([first.tex_header, *(c.tex_header for c in columns)]) + r" \\", r"\midrule"]
    for i, name in enumerate(first.tex_cells):
        rows.append(" & ".join([name, *(c.tex_cells[i] for c in columns)]) + r" \\")
    return "\n".join([rf"\begin{{tabular}}{{l{'r' * len(columns)}}}", r"\toprule", *rows, r"\bottomrule",
                      r"\end{tabular}"])


def float_table(body: str, caption: str, key: str, note: str = "", comments: Sequence[str] = ()) -> str:
    """A `table*` holding `body` in \\footnotesize with 4pt column separation, a caption, a label and one
    \\footnotesize note line; `comments` above it as LaTeX comments."""
    lines = [comment(c) for c in comments]
    lines += [r"\begin{table*}[tbp]", r"\centering", r"\footnotesize",
              rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}", rf"\caption{{{caption}}}", rf"\label{{{key}}}",
              body]
    if note:
        lines += [r"\par\smallskip", rf"{{\footnotesize {note}\par}}"]
    lines.append(r"\end{table*}")
    return "\n".join(lines)


def backbone_tables(backbone: str, table: pd.DataFrame, rows: pd.DataFrame, part: Part, where: str,
                    groups: Sequence[str] = tuple(GROUPS)) -> list[str]:
    """The tables of one backbone's leaderboard: one per group (cost, speed, accuracy, other), split to fit."""
    info = column_info(rows)
    labels = list(table.attrs.get("compare", {}))
    by_group: dict[str, list[str]] = {g: [] for g in GROUPS}
    for col in labels:
        by_group[GROUP_OF.get(info.get(col, ("", "", {}))[0], "other") if col in info else "other"].append(col)
    baseline = table.attrs.get("baseline", BASELINE)
    first = Column("Variant", [str(v) for v in table.index])
    env = part.footer()
    out: list[str] = []
    for group in groups:
        if not by_group.get(group):
            continue
        notes: list[str] = []
        if group == "cost":
            columns = cost_columns(table, by_group[group], info)
        elif group == "speed":
            columns, notes = speed_columns(table, by_group[group], info)
        elif group == "accuracy":
            columns, notes = accuracy_columns(table, by_group[group], info)
        else:
            columns = other_columns(table, by_group[group])
        if not columns:
            continue
        parts = split(columns, first)
        for i, chunk in enumerate(parts):
            marks, full = mark_note(chunk)
            note = " ".join([latex_text(n) for n in notes] + ([marks] if marks else []))
            of = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
            caption = latex_text(f"{backbone}{where}: {GROUPS[group]} of every variant against {baseline}{of}")
            comments = [f"{backbone}, {GROUPS[group]}{of}; {env}", *(f"mark {f}" for f in full),
                        *(kind_notes(rows) if not out else [])]  # the kinds' notes once, above the first table
            out.append(float_table(tabular(first, chunk), caption, label(backbone, part.section.environment_id,
                                                                         group, str(i)), note, comments))
    return out


def section_table(title: str, frame: pd.DataFrame, note: str) -> str:
    """A kind's extra section (e.g. deployability): its strings, long text wrapped in columns that fit."""
    flat = frame.reset_index() if not frame.empty else frame
    columns = [Column(str(c), [str(v) for v in flat[c]]) for c in flat.columns]
    if not columns:
        return comment(f"{title}: empty")
    widths = [c.width for c in columns]
    spec = ["l"] + ["r"] * (len(columns) - 1)
    if sum(widths) > BUDGET_PT:  # wrap the widest text columns in paragraphs of a share of what is left
        wide = sorted(range(len(columns)), key=lambda i: -widths[i])
        fixed = list(range(len(columns)))
        for i in wide:
            fixed.remove(i)
            room = (BUDGET_PT - sum(widths[j] for j in fixed)) / (len(columns) - len(fixed))
            if all(widths[j] <= room for j in range(len(columns)) if j not in fixed) or not fixed:
                break
        share = max((BUDGET_PT - sum(widths[j] for j in fixed)) / max(len(columns) - len(fixed), 1)
                    - 2 * TABCOLSEP_PT, 40.0)
        for i in range(len(columns)):
            if i not in fixed:
                spec[i] = f"p{{{share:.0f}pt}}"
                columns[i].tex_cells = [r"\raggedright " + t for t in columns[i].tex_cells]
    rows = [" & ".join(c.tex_header for c in columns) + r" \tabularnewline", r"\midrule"]
    for i in range(len(flat)):
        rows.append(" & ".join(c.tex_cells[i] for c in columns) + r" \tabularnewline")
    body = "\n".join([rf"\begin{{tabular}}{{{''.join(spec)}}}", r"\toprule", *rows, r"\bottomrule",
                      r"\end{tabular}"])
    return float_table(body, latex_text(title), label(title), prose(note) if note else "")


# -- figures ----------------------------------------------------------------------------------------------------
_PATH_UNSAFE = re.compile(r"[{}\\%#^~$&\"\x00-\x1f\x7f]")


def graphics_path(path: Path) -> str:
    """`path` for \\includegraphics: refused (UserError) where TeX would read it as more than a name: braces, a
    backslash, `%`, `#`, `^` (TeX's ^^ notation), `~`, `$`, `&`, `"` or control characters."""
    text = path.resolve().as_posix()
    bad = sorted(set(_PATH_UNSAFE.findall(text)))
    if bad or any(ord(c) > 127 for c in text):
        shown = ", ".join(visible(repr(c)) for c in bad) or "characters beyond ASCII"
        raise UserError(f"the LaTeX report cannot name the figure {visible(text)!r}: its path holds {shown} "
                        f"(move the plots to a folder whose path has only letters, digits, / . _ - and spaces)")
    return text


def figure(png: Path, title: str, caption: str) -> str:
    """A figure environment with the PDF beside `png` (the PNG when there is none) and its caption."""
    pdf = png.with_suffix(".pdf")
    path = graphics_path(pdf if pdf.exists() else png)
    return "\n".join(["\\begin{figure}[htbp]", "\\centering",
                      f"\\includegraphics[width=\\linewidth]{{\\detokenize{{{path}}}}}",
                      f"\\caption{{{latex_text(title)}. {latex_text(caption)}}}",
                      f"\\label{{{label('fig', png.stem).replace('tab:', 'fig:')}}}", "\\end{figure}"])


def render(report: Report) -> str:
    from .html_page import read_figures

    lines = [comment(report.title),
             "% generated by dynconv-bench; \\input{} this file in a document with \\usepackage{booktabs}"
             + (" and \\usepackage{graphicx}" if report.images else "")
             + "; each table is a table* that fits a 7 in text width", ""]
    figures = read_figures(report.images)
    for p in report.parts:
        env = describe_environment(p.section.environment)
        for b, t in p.boards.items():
            rows = p.section.rows[p.section.rows["backbone"] == b]
            where = f" (environment {p.section.environment_id})" if len(report.parts) > 1 else ""
            for tex in backbone_tables(b, t, rows, p, where):
                lines += [tex, ""]
            for fig in figures:
                if fig.backbone == b and fig.environment in ("", p.section.environment_id):
                    lines += [figure(fig.path, fig.title, fig.caption), ""]
        if not p.boards:
            lines.append(comment(f"no leaderboard in environment {p.section.environment_id}: {env}"))
    for title, frame, note in report.sections:
        lines += [section_table(title, frame, note), ""]
    for r in report.fails.itertuples():
        lines.append(comment(f"failed cell {r.cell}: {r.error}"))
    return "\n".join(lines).rstrip() + "\n"
