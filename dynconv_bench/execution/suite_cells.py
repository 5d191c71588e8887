"""A validated suite (Suite) and its expansion into cells: option lists made one cell each, backbone defaults
filled in, and a plugin variant's source attached (execution/suite.py makes a Suite from a file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measures import list_kinds
from ..measures.options import EXPANDED
from .cell import Cell


@dataclass
class Suite:
    """A validated suite file."""

    name: str
    path: Path | None
    description: str
    backbones: list[str]
    variants: list[tuple[str, str, dict[str, Any]]]  # (label, registered name, config as written)
    measure: dict[str, list[dict[str, Any]]]  # kind -> option tables ([[measure.KIND]] gives several)
    presets: dict[str, str] = field(default_factory=dict)  # variant label -> preset name
    memory_cap: str | int | float | None = None  # per-cell memory cap (see dynconv_bench.execution.processes.limits)

    def cells(self) -> list[Cell]:
        """Expand into cells: cheap kinds first so that a partial run already gives a leaderboard."""
        out: list[Cell] = []
        seen: set[tuple] = set()
        sources = {vname: cell_source(vname) for vname in {v for _, v, _ in self.variants}}
        for kind in list_kinds():
            for opts in self.measure.get(kind, []):
                wanted = None if opts["variants"] is None else set(opts["variants"])
                for backbone in opts["backbones"] or self.backbones:
                    for label, vname, cfg in self.variants:
                        if wanted is not None and label not in wanted:
                            continue
                        for options in _expand(opts, backbone):
                            cell = Cell(self.name, backbone, _source_label(label, vname, sources[vname]), vname, cfg,
                                        kind, options, self.presets.get(label), sources[vname])
                            if cell.key not in seen:  # two tables may ask for the same cell
                                seen.add(cell.key)
                                out.append(cell)
        return out


def cell_source(variant: str) -> dict[str, str] | None:
    """The variant's source as a cell keeps it: None for a built-in (so built-in cells keep their hashes)."""
    from ..models.registry import variant_source

    source = variant_source(variant)
    return None if source["from"] == "built-in" else source


def _source_label(label: str, variant: str, source: dict[str, str] | None) -> str:
    """A shadowed built-in's label says whose code it is, so its rows never pass for the built-in's."""
    from ..models.registry import shadowed_variants

    if source is None or variant not in shadowed_variants():
        return label
    return f"{label} [plugin {Path(source['path']).name} {source['sha256'][:8]}]"


def _expand(opts: dict[str, Any], backbone: str) -> list[dict[str, Any]]:
    """One table's options for one backbone as cell options: its defaults filled in, list keys one cell each."""
    from ..models.backbones import default_input_size, default_num_classes

    base = {k: v for k, v in opts.items() if k not in ("backbones", "variants", *EXPANDED)}
    if "num_classes" in base and base["num_classes"] is None:
        base["num_classes"] = default_num_classes(backbone)
    if "input_size" in base and base["input_size"] is None:
        base["input_size"] = list(default_input_size(backbone))
    out = [base]
    for key, cell_key in EXPANDED.items():  # e.g. batch_sizes = [1, 16] -> two cells, batch_size 1 and 16
        if key in opts:
            out = [{**o, cell_key: v} for o in out for v in opts[key]]
    return out
