"""Escaping per output format: user-chosen names (variants, backbones, datasets, error texts) reach every report.

Markdown text makes no link, image or HTML (`]` that could close a link, `<`, `&` and autolink starts escaped) and
cells keep the table's shape (pipes escaped, newlines as `<br>`); CSV fields follow OWASP's CSV-injection rule, also
after leading spaces and for full-width forms (NFKC); HTML is escaped with `html_text`/`html_frame`, LaTeX by pandas'
Styler and `latex_text`. Every format shows control characters, bidirectional marks and other invisible format
characters (Unicode Cf, the line and paragraph separators U+2028/U+2029) as escapes (`visible`); CSV keeps the
controls a field may hold (newlines, tabs). JSON is written as ASCII (`\\u202e`), so no raw character reaches it.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional marks and overrides (Trojan Source); the
# other candidates (any character beyond ASCII) are shown when their Unicode category is unsafe (`_hidden`)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\U0010ffff]")
_NON_ASCII = re.compile("[\x80-\U0010ffff]")
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")  # controls, format (bidi, zero-width, tags), surrogates, separators
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: a spreadsheet reads a field starting so as a formula


def _hidden(char: str) -> bool:
    """Whether `char` is invisible or changes how the text around it is shown (U+202E reverses it)."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return char.encode("unicode_escape").decode("ascii") if char < "\x80" or _hidden(char) else char


def visible(text: str) -> str:
    """`text` with every control character, ANSI escape, bidi mark and other format character (Unicode Cf, U+2028,
    U+2029) shown as a Python escape (`\\x1b`, `\\u202e`); tab and newline stay."""
    return _UNSAFE.sub(_escape, text)


def visible_format(text: str) -> str:
    """`text` with the characters beyond ASCII that `visible` shows (format characters such as bidi overrides,
    U+2028, U+2029, C1 controls, lone surrogates) shown as escapes; ASCII controls stay (a CSV field may hold
    newlines)."""
    return _NON_ASCII.sub(_escape, text)


_MD_ESCAPE = re.compile(r"[\\<&`]")
_MD_ESCAPE_CODE = re.compile(r"[\\<&]")
_MD_LINK_CLOSE = re.compile(r"\](?=\s*[(\[:])")  # `](url)`, `][ref]`, `]: url` (a definition): no link, no definition
_MD_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<![a-z0-9])(www)(\.)|(?<=\w)(@)(?=\w)")  # GFM autolinks


def md_text(text: Any, code: bool = False) -> str:
    """Text for Markdown outside a table, one line: control and format characters shown, no raw HTML (`<` and `&`
    escaped), no link or image (a `]` that could close one is escaped, and so are the starts of GitHub's autolinks:
    `://`, `www.`, `a@b`); backticks escaped too unless `code` (our own notes mark names as code)."""
    out = visible(str(text).replace("\r\n", "\n").replace("\n", " "))
    out = (_MD_ESCAPE_CODE if code else _MD_ESCAPE).sub(r"\\\g<0>", out)
    out = _MD_LINK_CLOSE.sub(r"\\]", out)
    return _MD_AUTOLINK.sub(lambda m: "".join(("\\" + g) if g in (":", ".", "@") else g
                                              for g in m.groups() if g is not None), out)


def md_label(text: Any) -> str:
    """`md_cell` for a label that our own `:` follows (`- label: error`): a last `]` is escaped too, so that
    `[x]` and our `:` never make a link reference definition."""
    out = md_cell(text)  # every `\\` of the text is escaped by now: a last `]` is never escaped yet
    return out[:-1] + "\\]" if out.endswith("]") else out


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
    """A string that a spreadsheet would run as a formula gets a leading `'` (OWASP), format characters (bidi
    overrides) shown as escapes; other values unchanged. A formula is also found after leading white space
    (` =1+1`) and in full-width or other compatibility forms (`＝`, `＋`, `－`, `＠`): the text is NFKC-normalised
    and left-stripped before the check, and written as it was."""
    if not isinstance(value, str):
        return value
    text = visible_format(value)
    if text.startswith(CSV_TRIGGERS) or unicodedata.normalize("NFKC", text).lstrip().startswith(CSV_TRIGGERS):
        return "'" + text
    return text


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its column labels, index and string cells made safe for spreadsheets (numbers stay numbers)."""
    out = df.rename(index=csv_field, columns=csv_field)
    for col in out.columns:
        if not _numeric(out[col]):
            out[col] = [csv_field(v) for v in out[col]]
    return out


def html_text(text: Any) -> str:
    """Text for HTML: control and format characters shown as escapes (`visible`), then `html.escape`d."""
    return html.escape(visible(str(text)))


def html_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its index, column labels and string cells passed through `visible` (`to_html` escapes them)."""
    def show(value: Any) -> Any:
        return visible(value) if isinstance(value, str) else value

    out = df.rename(index=show, columns=show)
    for col in out.columns:
        if not _numeric(out[col]):
            out[col] = [show(v) for v in out[col]]
    return out


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}", "\t": " ",
          # beyond ASCII: what pdflatex sets with its defaults (OT1 or T1, utf8) and no package
          "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "÷": r"\ensuremath{\div}", "†": r"\dag{}",
          "‡": r"\ddag{}", "§": r"\S{}", "¶": r"\P{}", "©": r"\copyright{}", "°": r"\ensuremath{^\circ}",
          "µ": r"\ensuremath{\mu}", "·": r"\ensuremath{\cdot}", "–": "--", "—": "---", "‘": "`", "’": "'",
          "“": "``", "”": "''", "…": r"\ldots{}", "•": r"\ensuremath{\bullet}", "≤": r"\ensuremath{\leq}",
          "≥": r"\ensuremath{\geq}", "≈": r"\ensuremath{\approx}", "≠": r"\ensuremath{\neq}",
          "→": r"\ensuremath{\rightarrow}", "←": r"\ensuremath{\leftarrow}", "∞": r"\ensuremath{\infty}",
          "−": r"\ensuremath{-}", "¡": r"\textexclamdown{}", "¿": r"\textquestiondown{}", "\u00a0": "~",
          "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "œ": r"\oe{}", "Œ": r"\OE{}", "ø": r"\o{}",
          "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}", "å": r"\aa{}", "Å": r"\AA{}",
          **{c: rf"\ensuremath{{\{n}}}" for c, n in zip("ΓΔΘΛΞΠΣΦΨΩαβγδεζηθικλμνξπρστυφχψω", (
              "Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega alpha beta gamma delta epsilon zeta eta theta "
              "iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi psi omega").split())}}
# accents (combining marks) that pdflatex sets as \<accent>{letter} in OT1 and T1 alike
_LATEX_ACCENTS = {"0300": "`", "0301": "'", "0302": "^", "0303": "~", "0308": '"', "0304": "=", "0307": ".",
                  "030A": "r", "0306": "u", "030C": "v", "030B": "H", "0327": "c"}
_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _latex_char(char: str) -> str:
    """One character for LaTeX: printable ASCII as itself (specials as commands), a few symbols and accented
    Latin letters as commands; any other character (controls, format characters, U+2028, full-width forms,
    scripts pdflatex has no glyph for) shown as its code point, `\\u2028` (a backslash drawn by
    \textbackslash)."""
    if char in _LATEX:
        return _LATEX[char]
    if " " <= char <= "~":
        return char
    parts = unicodedata.decomposition(char).split()
    if len(parts) == 2 and parts[1] in _LATEX_ACCENTS and chr(int(parts[0], 16)) in _ASCII_LETTERS:
        return f"\\{_LATEX_ACCENTS[parts[1]]}{{{chr(int(parts[0], 16))}}}"
    code = ord(char)
    return r"\textbackslash{}" + (f"x{code:02x}" if code < 0x100 else f"u{code:04x}" if code < 0x10000
                                  else f"U{code:08x}")


def latex_text(text: Any) -> str:
    """Text for LaTeX that pdflatex compiles with its defaults (OT1 or T1 fonts, utf8 input) and no package: one
    line (newlines as spaces), special characters as commands, accented Latin letters as accent commands, and
    every other character beyond printable ASCII (controls, bidi and zero-width marks, U+2028, U+FEFF, full-width
    `＝`, scripts without a glyph) as its code point, `\\u2028`, like `visible`."""
    return "".join(map(_latex_char, str(text).replace("\r\n", "\n").replace("\n", " ")))


class VisibleStream:
    """A text stream that writes through `visible` (the CLI's stdout: names a user chose reach a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(visible(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ... of the wrapped stream
        return getattr(self._stream, name)
