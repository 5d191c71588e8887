"""Output formats of the leaderboard report: one module each, registered by an entry point in the group
`dynconv_bench.formats` (the built-ins in this project's pyproject.toml, exactly as a third-party package's).

The entry point's name is the format's name (`report --format NAME`) and it names a module defining
`render(report: reporting.report.Report) -> str`, and optionally `SUFFIX` (the file suffix; default the name),
`HELP` (a line for `--help`), `FIGURES = True` (the `report` command passes it the PNG figures, as
`report.images`), `NOTES = True` (the command appends the store's notes as text lines) and
`render_comparison(df, run_a, run_b) -> str` (`report --compare`; default the Markdown table). The command line
lists the names from the entry points without importing a module, so `--help` loads no pandas. A format's helper
modules sit beside it, named by no entry point (latex.py's: latex_cells.py, latex_columns.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...discovery import FORMAT_GROUP, entry_point_names, load_group


@dataclass(frozen=True)
class Format:
    """One output format: its name (`report --format NAME`), file suffix, rendering module and a line of help."""

    name: str
    suffix: str
    module: str  # absolute, or relative to this package (".markdown")
    help: str
    figures: bool = False  # `report` makes (or reads) the PNG figures and passes them in Report.images
    notes: bool = False  # `report` appends the store's notes (sources, superseded rows, ...) as text lines

    def renderer(self) -> Callable[[Any], str]:
        return importlib.import_module(self.module, __name__).render

    def comparison(self) -> Callable[[Any, str, str], str] | None:
        """`render_comparison(df, run_a, run_b)` of the module; None where it defines none."""
        return getattr(importlib.import_module(self.module, __name__), "render_comparison", None)

    @classmethod
    def of_module(cls, name: str, module: Any) -> Format:
        """The format an entry point's module defines (see the module docstring)."""
        if not callable(getattr(module, "render", None)):
            raise TypeError(f"format module {module.__name__} defines no render(report) -> str")
        return cls(name, str(getattr(module, "SUFFIX", name)), module.__name__, str(getattr(module, "HELP", "")),
                   bool(getattr(module, "FIGURES", False)), bool(getattr(module, "NOTES", False)))


_FORMATS: dict[str, Format] = {}
_loaded = False


def register_format(fmt: Format) -> Format:
    """Make a format known to `render` and `write_report` from code (an installed one: by entry point)."""
    _FORMATS[fmt.name] = fmt
    return fmt


def _register_entry_point(ep: Any) -> None:
    register_format(Format.of_module(ep.name, ep.load()))


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        load_group(FORMAT_GROUP, "report format", _register_entry_point)


def list_formats() -> list[str]:
    """The formats' names: the installed entry points' (none imported), then any registered from code."""
    return list(dict.fromkeys([*entry_point_names(FORMAT_GROUP), *_FORMATS]))


def loaded_formats() -> list[str]:
    """The formats that loaded (a broken plugin's is left out, with a warning): what `write_report` writes."""
    _load()
    return list(_FORMATS)


def get_format(name: str) -> Format:
    from ...errors import unknown_choice

    _load()
    if name not in _FORMATS:
        raise unknown_choice("report format", name, list(_FORMATS))
    return _FORMATS[name]
