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
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import UserError
from ..escape import latex_text, visible
from ..marks import MARKS
from ..report import (
    BASELINE,
    Part,
    Report,
    describe_environment,
    format_number,
    format_table,
    kind_notes,
    metric_rows,
)

SUFFIX = "tex"
HELP = "booktabs tables for a paper (\\input them; needs \\usepackage{booktabs})"

TEXT_WIDTH_PT = 505.89  # \textwidth of a two-column paper's table* (7 in)
TABCOLSEP_PT = 4.0
_BUDGET_PT = TEXT_WIDTH_PT - 2  # what an estimate may fill (it counts the wider glyph of OT1 and T1, no kerning)
# widths (pt) of \footnotesize characters, the larger of OT1 and T1 (8pt Computer Modern, measured by pdflatex);
# others count as _CHAR_PT
_CHAR_PT = 7.1
_WIDTHS = {c: w for w, chars in ((2.37, "!',.:;[]`il|"), (2.6, "fj"), (2.84, " -"), (3.07, "I"), (3.31, "()rt"),
                                 (3.36, "s"), (3.78, "cez"), (4.01, "?"), (4.25, '"$*/0123456789\\ago{}'),
                                 (4.37, "J"), (4.49, "kqvxy"), (4.73, "Sbdhnpu"), (5.2, "Z^~"), (5.32, "L"),
                                 (5.55, "F"), (5.78, "EP"), (6.02, "B"), (6.14, "CTw"), (6.25, "R"),
                                 (6.37, "AHNUVXY"), (6.49, "D"), (6.61, "K&+<=>@OQ_±×"), (6.67, "G"),
                                 (7.09, "#%mΔ"), (7.79, "M"), (8.74, "W")) for c in chars}

_PUBLISHED_MARK = "\u00a4"  # ours: a published-weights cell (shown as a superscript w)
_MARKS_AT_END = re.compile(r"^(?P<body>.*?)(?P<marks>[" + re.escape("".join(MARKS) + _PUBLISHED_MARK) + r"]*)$", re.S)
_MARK_TEX = {"!": "!", "~": r"\textasciitilde{}", "*": "*", "†": r"\dag{}", "‡": r"\ddag{}", "§": r"\S{}",
             _PUBLISHED_MARK: "w"}
_SHORT_MARKS = {  # one line: the full meanings (marks.MARKS) are in a comment above each table
    "!": "timed under load", "~": "ratio between rows of different runs",
    "‡": "the run waited (wall time over 1.5x CPU time)",
    "§": "a wide interval (over 20% of the ratio) or worker processes that disagree: read the interval",
    "*": "95% CI of the difference excludes 0", "†": "top-1 near chance: the row says little about the variant",
    _PUBLISHED_MARK: "evaluated from published weights",
}
_PUBLISHED = " (published weights)"
GROUPS = {"cost": "cost", "speed": "speed", "accuracy": "accuracy", "other": "other figures"}
_GROUP_OF = {"params": "cost", "deployed_params": "cost", "macs": "cost", "overhead": "cost", "peak_memory": "cost",
             "latency": "speed", "throughput": "speed", "top1": "accuracy"}


# -- cells and text ---------------------------------------------------------------------------------------------
def cell(text: Any) -> str:
    """One value cell: the text escaped, its trailing marks (marks.MARKS) as a superscript."""
    m = _MARKS_AT_END.match(str(text))
    body, marks = m["body"].rstrip(), m["marks"]
    return latex_text(body) + _sup(marks)


def _sup(marks: str) -> str:
    return rf"\textsuperscript{{{''.join(_MARK_TEX.get(c) or latex_text(c) for c in marks)}}}" if marks else ""


def prose(text: Any) -> str:
    """A note for LaTeX: escaped, with `name` as \\texttt{name}."""
    pieces = str(text).split("`")
    return "".join(rf"\texttt{{{latex_text(p)}}}" if i % 2 else latex_text(p) for i, p in enumerate(pieces))


def comment(text: Any) -> str:
    """`text` as LaTeX comment lines: control and format characters shown, one `%` line per line of text."""
    lines = str(text).replace("\r\n", "\n").split("\n")
    return "\n".join("% " + visible(line).replace("\t", " ") for line in lines)


def label(*parts: str) -> str:
    """A \\label key: the parts' letters and digits, and a short hash of the full text (k! and k? differ)."""
    text = "/".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
    return f"tab:dynconv-{slug}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def _plain_width(text: str) -> float:
    """Estimated width (pt) of a cell's plain text in \\footnotesize; marks are superscripts (smaller)."""
    m = _MARKS_AT_END.match(text)
    return sum(_WIDTHS.get(c, _CHAR_PT) for c in m["body"]) + 3.8 * len(m["marks"])


@dataclass
class Column:
    """One column: its header and cells as plain text (marks at the end) and in LaTeX."""

    header: str
    cells: list[str]
    tex_header: str = ""
    tex_cells: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tex_header = self.tex_header or latex_text(self.header)
        self.tex_cells = self.tex_cells or [cell(c) for c in self.cells]

    @property
    def width(self) -> float:
        return max(_plain_width(t) for t in [self.header, *self.cells]) + 2 * TABCOLSEP_PT


# -- the columns of each group ----------------------------------------------------------------------------------
def _info(rows: pd.DataFrame) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Per leaderboard label: its metric, unit and dimensions."""
    long = metric_rows(rows)
    dims = [c for c in long.columns if c not in ("backbone", "variant", "id", "environment_id", "run_id", "metric",
                                                 "unit", "label", "compare", "order", "higher_is_better", "value",
                                                 "flags", "ratio", "ratio_low", "ratio_high")]
    out = {}
    for r in long.drop_duplicates("label").itertuples(index=False):
        d = r._asdict()
        out[str(r.label)] = (str(r.metric), str(r.unit), {k: d[k] for k in dims if not _missing(d[k])})
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _marks(table: pd.DataFrame, col: str) -> list[str]:
    """The marks of `col` per row (our own mark for published weights last), from the table's `... marks` column."""
    raw = table.get(f"{col} marks", pd.Series(index=table.index, dtype=object))
    out = []
    for m in raw:
        m = m if isinstance(m, str) else ""
        out.append("".join(c for c in m.replace(_PUBLISHED, "") if c in MARKS) + (_PUBLISHED_MARK if _PUBLISHED in m else ""))
    return out


def _batch(dims: dict[str, Any]) -> str:
    return f"b{int(dims['batch_size'])}" if "batch_size" in dims else ""


def cost_columns(table: pd.DataFrame, labels: list[str], info: dict) -> list[Column]:
    """Params (M), deployed params (M), MACs (M or G), MAC overhead (%), peak memory (MiB): values only."""
    out = []
    for col in labels:
        metric, unit, dims = info[col]
        vals = table[col].astype(float)
        scale, shown_unit = 1.0, unit
        if metric == "macs" and unit == "M" and vals.abs().median() >= 1000:
            scale, shown_unit = 1e-3, "G"
        header = {"params": f"Params ({shown_unit})", "deployed_params": f"Deployed params ({shown_unit})",
                  "macs": f"MACs ({shown_unit})", "overhead": "MAC overhead (%)"}.get(metric)
        if metric == "peak_memory":
            header = f"{'Train mem' if dims.get('mode') == 'train' else 'Mem'} {_batch(dims)} ({unit})".replace(
                "  ", " ")
        if metric == "overhead":
            cells = ["-" if pd.isna(v) else f"{v:.1f}" for v in vals]
        else:
            cells = [format_number(v * scale) for v in vals]
        out.append(Column(header or col, [c + m if c != "-" else c for c, m in zip(cells, _marks(table, col))]))
    return out


def _ratio_column(table: pd.DataFrame, col: str, compare: str, baseline: str) -> str:
    return f"{col} speed-up vs {baseline}" if compare == "speedup" else f"{col} vs {baseline}"


def _interval(x: float, lo: Any, hi: Any) -> str:
    if pd.isna(x):
        return "-"
    return f"{x:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else f"{x:.2f}"


def speed_columns(table: pd.DataFrame, labels: list[str], info: dict) -> tuple[list[Column], list[str]]:
    """The speed-up over the baseline per device, mode and batch (throughput's ratio; latency's speed-up where no
    throughput of that device and batch has one) with its interval, the baseline's row its A/A measurement, and
    the img/s of one batch size (16, else the largest) as the report's table holds it (the baseline's measured
    throughput times each row's ratio where the baseline has a cell). Returns the notes."""
    baseline = table.attrs.get("baseline", BASELINE)
    compare = table.attrs.get("compare", {})
    devices = {info[c][2].get("device") for c in labels}
    have = {(info[c][2].get("device"), info[c][2].get("batch_size")) for c in labels
            if info[c][0] == "throughput" and info[c][2].get("mode") != "train"
            and _ratio_column(table, c, compare[c], baseline) in table}
    out, kinds, aa = [], set(), False
    nan = pd.Series(index=table.index, dtype=object)
    for col in labels:
        metric, unit, dims = info[col]
        ratio = _ratio_column(table, col, compare[col], baseline)
        if ratio not in table:
            continue
        if metric == "latency" and (dims.get("device"), dims.get("batch_size")) in have:
            continue  # the same cells' throughput ratio says it
        parts = [dims.get("device") if len(devices) > 1 else None,
                 "train" if dims.get("mode") == "train" else ("latency" if metric == "latency" else None),
                 _batch(dims)]
        header = " ".join(p for p in parts if p)
        measured = table.get(f"{ratio} measured", nan)
        kinds |= set(table.get(f"{ratio} interval", nan).dropna())
        cells = []
        for v, x, a, lo, hi in zip(table.index, table[ratio], measured, table.get(f"{ratio} low", nan),
                                   table.get(f"{ratio} high", nan)):
            if v == baseline and pd.notna(a):
                aa = True
                cells.append("A/A " + _interval(a, lo, hi))
            else:
                cells.append(_interval(x, lo, hi))
        out.append(Column(header or col, [c + m if c != "-" else c for c, m in zip(cells, _marks(table, col))]))
    if not out:
        return [], []
    bracket = {"95% bootstrap": "95% interval (bootstrap over rounds and processes)",
               "process min-max": "min-max of the worker processes' ratios"}
    shown = [bracket.get(k, k) for k in sorted(kinds, reverse=True)]
    notes = [f"Speed-up over {baseline} (×, higher is better) measured in each cell"
             + (f", [{' or '.join(shown)}]" if shown else "")
             + (f"; {baseline}: A/A, against itself (the noise floor)" if aa else "") + "."]
    infer = [c for c in labels if info[c][0] == "throughput" and info[c][2].get("mode") != "train"]
    pick = ([c for c in infer if info[c][2].get("batch_size") == 16] or
            sorted(infer, key=lambda c: -(info[c][2].get("batch_size") or 0)))[:1]
    for col in pick:
        dims = info[col][2]
        where = f"{dims.get('device')} " if len(devices) > 1 else ""
        out.append(Column(f"{where}{_batch(dims)} img/s", [format_number(v) for v in table[col].astype(float)]))
        if f"{col} measured" in table:
            notes.append(f"img/s: {baseline}'s measured throughput × the row's ratio.")
    return out, notes


def accuracy_columns(table: pd.DataFrame, labels: list[str], info: dict) -> tuple[list[Column], list[str]]:
    """Per dataset: top-1 mean ± std over seeds, and the difference of means to the baseline in points with its 95%
    Welch interval (`*` where it excludes 0), or with too few seeds the range of the seed pairs' differences.
    Returns the notes (the seeds, what the brackets hold)."""
    baseline = table.attrs.get("baseline", BASELINE)
    out, seeds, pairs = [], set(), False
    nan = pd.Series(index=table.index, dtype=object)
    for col in labels:
        dims = info[col][2]
        name = dims.get("dataset", "")
        std, n = table[f"{col} std"], table[f"{col} n"]
        seeds |= {int(k) for k in n if pd.notna(k)}
        cells = ["-" if pd.isna(m) else f"{m:.2f}" + (f" ± {s:.2f}" if pd.notna(s) else "")
                 for m, s in zip(table[col], std)]
        cells = [c + mk if c != "-" else c for c, mk in zip(cells, _marks(table, col))]
        out.append(Column(f"Top-1 {name} (%)".replace("  ", " "), cells))
        vs = f"{col} vs {baseline}"
        if f"{vs} (pts)" in table:
            diff = []
            for v, d, lo, hi, sig, slo, shi in zip(table.index, table[f"{vs} (pts)"], table[f"{vs} CI low"],
                                                   table[f"{vs} CI high"], table[f"{vs} significant"],
                                                   table.get(f"{vs} seeds low", nan), table.get(f"{vs} seeds high", nan)):
                if v == baseline or pd.isna(d):
                    diff.append("-")
                elif slo is not None and pd.notna(slo):
                    pairs = True
                    diff.append(f"{d:+.2f} ({slo:+.2f} to {shi:+.2f})")
                elif lo is None or pd.isna(lo):
                    diff.append(f"{d:+.2f}")
                else:
                    diff.append(f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" + ("*" if sig else ""))
            out.append(Column(f"Δ {name} (pts)".replace("  ", " "), diff,
                              tex_header=latex_text(f"Δ {name} (pts)".replace("  ", " "))))
    if not out:
        return [], []
    n_text = (f"n={min(seeds)}" if len(seeds) == 1 else f"n={min(seeds)}-{max(seeds)}") if seeds else "n"
    return out, [f"Top-1: mean ± std over {n_text} seeds; Δ: difference of means to {baseline} in points"
                 + (", [95% Welch CI]" if any("[" in c for col in out[1::2] for c in col.cells) else "")
                 + (", (range of the seed pairs' differences: too few seeds for an interval)" if pairs else "")
                 + "."]


def other_columns(table: pd.DataFrame, labels: list[str]) -> list[Column]:
    """Figures of no known group: `format_table`'s strings, under their leaderboard labels."""
    shown = format_table(table)
    out = []
    for col in labels:
        name = next((c for c in shown.columns if c == col or c.startswith(f"{col},")), None)
        if name is not None:
            out.append(Column(col, [str(v) for v in shown[name]]))
    return out


# -- tables -----------------------------------------------------------------------------------------------------
def split(columns: list[Column], first: Column, budget: float = _BUDGET_PT) -> list[list[Column]]:
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


def mark_note(columns: list[Column]) -> tuple[str, list[str]]:
    """The one line that explains the marks the columns' cells carry, and their full meanings (comments)."""
    used = "".join(_MARKS_AT_END.match(t)["marks"] for c in columns for t in c.cells)
    present = [m for m in [*MARKS, _PUBLISHED_MARK] if m in used]
    line = "; ".join(_sup(m) + latex_text(_SHORT_MARKS.get(m) or MARKS[m]) for m in present)
    full = [f"{m}: {MARKS.get(m, _SHORT_MARKS[m])}" for m in present]
    return (line + "." if line else ""), full


def backbone_tables(backbone: str, table: pd.DataFrame, rows: pd.DataFrame, part: Part, where: str,
                    groups: Sequence[str] = tuple(GROUPS)) -> list[str]:
    """The tables of one backbone's leaderboard: one per group (cost, speed, accuracy, other), split to fit."""
    info = _info(rows)
    labels = list(table.attrs.get("compare", {}))
    by_group: dict[str, list[str]] = {g: [] for g in GROUPS}
    for col in labels:
        by_group[_GROUP_OF.get(info.get(col, ("", "", {}))[0], "other") if col in info else "other"].append(col)
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
    if sum(widths) > _BUDGET_PT:  # wrap the widest text columns in paragraphs of a share of what is left
        wide = sorted(range(len(columns)), key=lambda i: -widths[i])
        fixed = list(range(len(columns)))
        for i in wide:
            fixed.remove(i)
            room = (_BUDGET_PT - sum(widths[j] for j in fixed)) / (len(columns) - len(fixed))
            if all(widths[j] <= room for j in range(len(columns)) if j not in fixed) or not fixed:
                break
        share = max((_BUDGET_PT - sum(widths[j] for j in fixed)) / max(len(columns) - len(fixed), 1)
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
        lines.append(comment(f"failed cell {r.backbone}/{r.variant}/{r.kind}: {r.error}"))
    return "\n".join(lines).rstrip() + "\n"
