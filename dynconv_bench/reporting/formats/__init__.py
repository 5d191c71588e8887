"""Output formats of the leaderboard report: one module each, found by name through this registry.

A format module defines `render(report: reporting.report.Report) -> str`. The registry names the module and the
file suffix without importing it, so the command line lists the formats without loading pandas.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Format:
    """One output format: its name (`report --format NAME`), file suffix, rendering module and a line of help."""

    name: str
    suffix: str
    module: str  # absolute, or relative to this package (".markdown")
    help: str

    def renderer(self) -> Callable[[Any], str]:
        return importlib.import_module(self.module, __name__).render


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Make a format known to `render`, `write_report` and the `report --format` option."""
    _FORMATS[fmt.name] = fmt
    return fmt


def list_formats() -> list[str]:
    return list(_FORMATS)


def get_format(name: str) -> Format:
    from ...errors import unknown_choice

    if name not in _FORMATS:
        raise unknown_choice("report format", name, list_formats())
    return _FORMATS[name]


for _fmt in (Format("md", "md", ".markdown", "Markdown tables, one per backbone, with notes"),
             Format("csv", "csv", ".csv_table", "one numeric table of every backbone (spreadsheet-safe text)"),
             Format("json", "json", ".json_doc", "the numeric tables, notes and failures as JSON"),
             Format("latex", "tex", ".latex", "booktabs tables for a paper (\\input them; needs \\usepackage{booktabs})"),
             Format("html", "html", ".html_page", "a self-contained page with tables, notes and figures")):
    register_format(_fmt)
