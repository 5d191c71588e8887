"""Writing a figure: PNG, SVG (real text) and PDF, with the title, caption and tags in the files' metadata; labels
as plain text (never mathtext or LaTeX); file names from labels. Importing it selects the Agg backend.

Figures are written through `files.replacing` (a figure name that is a symbolic link is refused, never followed)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..files import replacing  # noqa: E402
from .escape import visible  # noqa: E402

FORMATS = ("png", "svg", "pdf")
# text stays text: editable in Inkscape/Illustrator (SVG) and embedded as TrueType, not Type 3 outlines (PDF)
EDITABLE_TEXT = {"svg.fonttype": "none", "pdf.fonttype": 42}
PLAIN_TEXT = {"text.usetex": False}  # a user's matplotlibrc with usetex on would send labels to LaTeX


def plain(text: Any) -> str:
    """A label as matplotlib draws it literally: control and format characters (bidi overrides) shown as escapes,
    every `$` escaped (`\\$`), so no pair of them starts mathtext (`$\\undefinedmacro$` would raise at draw)."""
    return visible(str(text)).replace("$", r"\$")


def unplain(text: str) -> str:
    """The inverse of `plain`'s `$` escape (for the title stored in a figure's metadata)."""
    return text.replace(r"\$", "$")


def slug(text: str) -> str:
    """A file-name part for a label: its letters and digits (at most 40) and a short hash of the whole label, so
    that labels differing only in punctuation or script (`k!`, `k?`; `变体`, `вариант`) never share a file."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40].strip("-")
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else digest


def save_figure(fig: Any, out_dir: Path, stem: str, env: str, caption: str = "",
                tags: Mapping[str, str] | None = None, finished: bool = False) -> list[Path]:
    """Write PNG, SVG and PDF; the PNG carries title, caption, environment line and `tags` (Suite, Environment,
    Backbone) as text chunks (the HTML report places each figure by them), the SVG and PDF title and caption."""
    if not finished:
        finish(fig, env, caption)
    title = unplain(fig.axes[0].get_title()) if fig.axes else stem
    if fig.axes:  # the title leads the caption the reports print: not drawn twice
        fig.axes[0].set_title("")
    metadata = {"png": {**(tags or {}), "Title": title, "Description": caption, "Comment": env},
                "svg": {"Title": title, "Description": caption, "Source": env},
                "pdf": {"Title": title, "Subject": caption, "Keywords": env}}
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with replacing(path, "figure") as tmp, plt.rc_context(EDITABLE_TEXT):  # a full disk keeps the old figure
            # bbox "tight": the saved area grows to every artist, so no label or legend is cut at the frame
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata[fmt], bbox_inches="tight", pad_inches=0.05)
        paths.append(path)
    plt.close(fig)
    return paths


def finish(fig: Any, env: str = "", caption: str = "") -> None:
    """The final layout. The caption and environment line are not drawn: the reports print them (metadata)."""
    fig.tight_layout()
