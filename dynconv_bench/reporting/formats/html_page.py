"""HTML: a self-contained page: contents, then per backbone its table, the notes that explain it and its figures.

Styles inline, figures as data URIs. Figures find their section through the text chunks that
`figure_files.save_figure` writes into each PNG (backbone and environment id); a PNG without them goes under "Other
figures". The figures carry no caption of their own: the page shows the caption stored in the PNG under each one.
Every text is escaped (`escape.html_text`: markup, and control and format characters such as bidi overrides shown
as escapes); notes show `name` as <code>name</code>.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..escape import html_frame, html_text

SUFFIX = "html"
HELP = "a self-contained page with tables, notes and figures"
FIGURES = True  # `report` makes the figures (or reads --plots-dir) and passes their PNGs in Report.images

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "h1{font-size:1.5em}h2{margin-top:2em}p,li,figcaption{overflow-wrap:anywhere}"
    ".scroll{overflow-x:auto;max-width:100%;margin:.5em 0}"  # a wide table scrolls inside, the page does not
    "table{border-collapse:separate;border-spacing:0;font-size:13px}"  # separate: sticky cells keep borders
    "th,td{border:1px solid #ccc;border-width:0 1px 1px 0;padding:4px 8px;text-align:right;background:#fff}"
    "tr:first-child th{border-top-width:1px}th:first-child,td:first-child{border-left-width:1px}"
    "td{white-space:nowrap}th{background:#f3f3f3;vertical-align:bottom;min-width:5em}"
    "td:first-child,th:first-child{text-align:left;position:sticky;left:0;z-index:1}"  # the variant stays in view
    "td:first-child{box-shadow:2px 0 2px -1px #bbb}"
    "code{font-size:.95em;background:#f3f3f3;padding:0 .2em;border-radius:2px}"
    ".figures{display:flex;flex-direction:column;gap:1.5em;align-items:flex-start}"
    "figure{margin:0;width:100%;max-width:900px}figure img{width:100%;height:auto}"
    "figcaption{font-size:14px;color:#333;margin-top:.3em}.note{color:#555;font-size:13px;max-width:80em}"
)


@dataclass(frozen=True)
class Figure:
    """A PNG to embed, with the title, caption, suite, backbone and environment id it carries (empty: unknown)."""

    path: Path
    title: str
    caption: str
    suite: str
    backbone: str
    environment: str


def read_figures(paths: Sequence[Path]) -> list[Figure]:
    """The PNGs among `paths` with their text chunks (PIL reads them; matplotlib depends on it)."""
    from PIL import Image

    out = []
    for path in map(Path, paths):
        if path.suffix != ".png" or not path.is_file():
            continue
        with Image.open(path) as img:
            meta = dict(getattr(img, "text", {}) or {})
        out.append(Figure(path, meta.get("Title") or path.stem, meta.get("Description", ""), meta.get("Suite", ""),
                          meta.get("Backbone", ""), meta.get("Environment", "")))
    return out


def anchor(*parts: str) -> str:
    """An id for a section: the parts, lower-case, with runs of other characters as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def table_html(table: pd.DataFrame) -> str:
    """A table in a horizontally scrolling box; the row labels are a plain first column (one header row)."""
    flat = html_frame(table.reset_index())  # bidi overrides and controls shown as escapes; to_html escapes markup
    return f'<div class="scroll">{flat.to_html(index=False, escape=True, border=0)}</div>'


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode()
    caption = f"<b>{html_text(fig.title)}.</b> {html_text(fig.caption)}".strip()  # the image has neither
    return (f'<figure><img alt="{html_text(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def figures_html(figures: Sequence[Figure]) -> str:
    return '<div class="figures">' + "".join(map(figure_html, figures)) + "</div>"


@dataclass
class Section:
    """One heading of the page: its id, level and title, and its HTML body."""

    id: str
    level: int
    title: str
    body: list[str]


def page(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page: title, intro paragraphs, a table of contents, then the sections (ids made unique)."""
    seen: set[str] = set()
    for s in sections:  # names that differ only in punctuation or script (k!, k?) share an anchor: number them
        base = s.id or "section"
        uid, k = base, 1
        while uid in seen:
            k += 1
            uid = f"{base}-{k}"
        s.id = uid
        seen.add(uid)
    toc: list[str] = []
    levels: list[int] = []  # the levels of the open lists; the last item of each is still open
    for s in sections:
        if not levels or s.level > levels[-1]:
            toc.append("<ul>")
            levels.append(s.level)
        else:
            toc.append("</li>")
            while len(levels) > 1 and s.level < levels[-1]:
                toc.append("</ul></li>")
                levels.pop()
        toc.append(f'<li><a href="#{s.id}">{html_text(s.title)}</a>')
    toc.append("</li></ul>" * len(levels))
    toc = ["<nav><h2>Contents</h2>", *toc, "</nav>"]
    body = [f"<h1>{html_text(title)}</h1>", *(f'<p class="note">{html_text(t)}</p>' for t in intro),
            "".join(toc)]
    for s in sections:
        body.append(f'<section id="{s.id}"><h{s.level}>{html_text(s.title)}</h{s.level}>{"".join(s.body)}'
                    f"</section>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html_text(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def inline_html(text: Any) -> str:
    """Escaped text with `name` as <code>name</code> (the notes' one piece of Markdown)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html_text(text))


def note_html(*texts: Any) -> str:
    return "".join(f'<p class="note">{inline_html(t)}</p>' for t in texts if t)


def render_comparison(df: pd.DataFrame, run_a: str, run_b: str) -> str:
    """`report --compare`: the comparison's rows as one escaped HTML table."""
    return html_frame(df).to_html(index=False)


def render(report: Any) -> str:
    """The page: per environment and backbone a section with its table, the notes on it and its figures.

    Figures tagged with a suite not among the report's suites are left out (a plots folder holds every suite's).
    """
    from ..environments import describe_environment
    from ..leaderboard import BASELINE
    from ..marks import NOTE, mark_notes
    from ..report import kind_notes
    from ..table_text import format_table

    suites, parts = report.suites, report.parts
    figures = [f for f in read_figures(report.images) if not f.suite or not suites or f.suite in suites]
    placed: set[Path] = set()
    intro = [report.mixed_note()] if len(parts) > 1 else []
    sections: list[Section] = []
    for i, p in enumerate(parts):
        env_id, level = p.section.environment_id, 2
        if len(parts) > 1:
            heading = f"Environment {env_id}: {describe_environment(p.section.environment)}"
            sections.append(Section(anchor("env", env_id), 2, heading, [note_html(p.footer())]))
            level = 3
        for b, t in p.boards.items():
            mine = [f for f in figures if f.backbone == b and f.environment in (env_id, "" if i == 0 else env_id)]
            placed.update(f.path for f in mine)
            rows = p.section.rows[p.section.rows["backbone"] == b]
            shown = format_table(t)
            compared = any(", x: " in c or f" vs {BASELINE} " in c for c in shown.columns)  # else no ratio to explain
            body = [table_html(shown), note_html(NOTE.format(b=BASELINE) if compared else "", *mark_notes(shown),
                                                 *kind_notes(rows))]
            if len(parts) == 1:
                body.append(note_html(p.footer()))
            if mine:
                body.append(figures_html(mine))
            sections.append(Section(anchor("env", env_id, b) if len(parts) > 1 else anchor(b), level, b, body))
    for title, table, note in report.sections:  # the sections measurement kinds add (e.g. deployability)
        sections.append(Section(anchor(title), 2, title, [table_html(table), note_html(note)]))
    rest = [f for f in figures if f.path not in placed]
    if rest:
        sections.append(Section("other-figures", 2, "Other figures", [figures_html(rest)]))
    fails = report.fails
    if not fails.empty:
        items = "".join(f"<li>{html_text(f'{r.cell}: {r.error}')}</li>"
                        for r in fails.itertuples())
        sections.append(Section("failed", 2, f"Failed cells ({len(fails)})", [f"<ul>{items}</ul>"]))
    return page(report.title, intro, sections)
