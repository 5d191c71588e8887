"""Escaping per output format: user-chosen names (variants, backbones, datasets, error texts) reach every report.

Markdown cells keep the table's shape (pipes escaped, newlines as `<br>`, no raw HTML); CSV fields follow OWASP's
CSV-injection rule; terminal text shows control characters, ANSI escapes and bidirectional marks as escapes.
HTML is escaped with `html.escape` where it is written, LaTeX by pandas' Styler and `latex_text` here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional marks and overrides (Trojan Source)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: a spreadsheet reads a field starting so as a formula


def visible(text: str) -> str:
    """`text` with every control character, ANSI escape and bidi mark shown as a Python escape (`\\x1b`, `\\u202e`)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def md_text(text: Any, code: bool = False) -> str:
    """Text for Markdown outside a table: control characters shown, no raw HTML (`<` escaped), one line;
    backticks escaped too unless `code` (our own notes mark names as code)."""
    out = visible(str(text).replace("\r\n", "\n").replace("\n", " "))
    return re.sub(r"([\\<])" if code else r"([\\<`])", r"\\\1", out)


def md_cell(text: Any) -> str:
    """Text for a Markdown table cell: as `md_text`, with pipes escaped and newlines as `<br>`."""
    lines = str(text).replace("\r\n", "\n").split("\n")
    return "<br>".join(md_text(line).replace("|", "\\|") for line in lines)


def md_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its index, column labels and string cells escaped for a Markdown table."""
    out = df.rename(index=md_cell, columns=md_cell)
    out.index.name = None if df.index.name is None else md_cell(df.index.name)
    for col in out.columns:
        if not _numeric(out[col]):
            out[col] = [md_cell(v) if isinstance(v, str) else v for v in out[col]]
    return out


def _numeric(column: pd.Series) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(column) or is_bool_dtype(column)


def csv_field(value: Any) -> Any:
    """A string that a spreadsheet would run as a formula gets a leading `'` (OWASP); other values unchanged."""
    if isinstance(value, str) and value.startswith(CSV_TRIGGERS):
        return "'" + value
    return value


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its column labels, index and string cells made safe for spreadsheets (numbers stay numbers)."""
    out = df.rename(index=csv_field, columns=csv_field)
    for col in out.columns:
        if not _numeric(out[col]):
            out[col] = [csv_field(v) for v in out[col]]
    return out


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "±": r"\ensuremath{\pm}", "†": r"\dag{}", "|": r"\textbar{}"}
_LATEX_RE = re.compile("|".join(map(re.escape, _LATEX)))


def latex_text(text: Any) -> str:
    """Text for LaTeX: special characters as commands, control characters shown, one line."""
    out = visible(str(text).replace("\r\n", "\n").replace("\n", " "))
    return _LATEX_RE.sub(lambda m: _LATEX[m.group()], out)


class VisibleStream:
    """A text stream that writes through `visible` (the CLI's stdout: names a user chose reach a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(visible(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ... of the wrapped stream
        return getattr(self._stream, name)
