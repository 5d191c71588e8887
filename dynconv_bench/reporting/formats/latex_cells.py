"""Cells and text of the LaTeX tables: values with their marks as superscripts, notes, comments and labels, the
width a column takes in \\footnotesize (`Column`, for fitting a table to the page), and the line that explains the
marks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..escape import latex_text, visible
from ..marks import MARKS

TEXT_WIDTH_PT = 505.89  # \textwidth of a two-column paper's table* (7 in)
TABCOLSEP_PT = 4.0
BUDGET_PT = TEXT_WIDTH_PT - 2  # what an estimate may fill (it counts the wider glyph of OT1 and T1, no kerning)
# widths (pt) of \footnotesize characters, the larger of OT1 and T1 (8pt Computer Modern, measured by pdflatex);
# others count as _CHAR_PT
_CHAR_PT = 7.1
_WIDTHS = {c: w for w, chars in ((2.37, "!',.:;[]`il|"), (2.6, "fj"), (2.84, " -"), (3.07, "I"), (3.31, "()rt"),
                                 (3.36, "s"), (3.78, "cez"), (4.01, "?"), (4.25, '"$*/0123456789\\ago{}'),
                                 (4.37, "J"), (4.49, "kqvxy"), (4.73, "Sbdhnpu"), (5.2, "Z^~"), (5.32, "L"),
                                 (5.55, "F"), (5.78, "EP"), (6.02, "B"), (6.14, "CTw"), (6.25, "R"),
                                 (6.37, "AHNUVXY"), (6.49, "D"), (6.61, "K&+<=>@OQ_±×"), (6.67, "G"),
                                 (7.09, "#%mΔ"), (7.79, "M"), (8.74, "W")) for c in chars}

PUBLISHED_MARK = "\u00a4"  # ours: a published-weights cell (shown as a superscript w)
_MARKS_AT_END = re.compile(r"^(?P<body>.*?)(?P<marks>[" + re.escape("".join(MARKS) + PUBLISHED_MARK) + r"]*)$", re.S)
_MARK_TEX = {"!": "!", "~": r"\textasciitilde{}", "*": "*", "†": r"\dag{}", "‡": r"\ddag{}", "§": r"\S{}",
             PUBLISHED_MARK: "w"}
_SHORT_MARKS = {  # one line: the full meanings (marks.MARKS) are in a comment above each table
    "!": "timed under load", "~": "ratio between rows of different runs",
    "‡": "the run waited (wall time over 1.5x CPU time)",
    "§": "a wide interval (over 20% of the ratio) or worker processes that disagree: read the interval",
    "*": "95% CI of the difference excludes 0", "†": "top-1 near chance: the row says little about the variant",
    PUBLISHED_MARK: "evaluated from published weights",
}


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


def mark_note(columns: list[Column]) -> tuple[str, list[str]]:
    """The one line that explains the marks the columns' cells carry, and their full meanings (comments)."""
    used = "".join(_MARKS_AT_END.match(t)["marks"] for c in columns for t in c.cells)
    present = [m for m in [*MARKS, PUBLISHED_MARK] if m in used]
    line = "; ".join(_sup(m) + latex_text(_SHORT_MARKS.get(m) or MARKS[m]) for m in present)
    full = [f"{m}: {MARKS.get(m, _SHORT_MARKS[m])}" for m in present]
    return (line + "." if line else ""), full
