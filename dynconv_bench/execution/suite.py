"""Suite files (TOML): find one by name, read it, and validate it whole into a Suite (execution/suite_cells.py
expands a Suite into cells); every problem is one line naming the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from ..errors import UserError, unknown_choice
from ..measures import list_kinds
from .suite_cells import Suite
from .suite_checks import check_backbone, check_keys, check_name, check_type, check_unique, str_list
from .suite_measure import parse_measure
from .suite_variants import check_presets, parse_variants, presets_of

TOP_KEYS = ("name", "description", "backbones", "variants", "measure", "memory_cap")


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """`NAME` -> ./suites/NAME.toml, ./NAME.toml or the bundled suites/NAME.toml; a path is used as it is."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or "/" in text or path.is_file():
        if not path.is_file():
            raise UserError(f"suite file not found: {path}")
        return path
    folders = (Path.cwd() / "suites", Path.cwd(), bundled_suites_dir())
    for folder in folders:
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return candidate
    error = unknown_choice("suite", text, list_suites())
    raise UserError(f"{error} (looked for {text}.toml in {', '.join(map(str, folders))})")


def bundled_suites_dir() -> Path:
    """The suites/ folder shipped beside the package."""
    import dynconv_bench

    return Path(dynconv_bench.__file__).resolve().parents[1] / "suites"


def list_suites() -> list[str]:
    """Names of the suites in ./suites and the bundled suites folder."""
    names: set[str] = set()
    for folder in (Path.cwd() / "suites", bundled_suites_dir()):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite; every problem is a UserError naming the file and key."""
    path = resolve_suite_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: malformed TOML: arrays or tables nested too deeply") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read suite: {exc}") from None
    try:
        return parse_suite(data, source=str(path), default_name=path.stem, path=path)
    except RecursionError:
        raise UserError(f"{path}: a value is nested too deeply") from None


def parse_suite(data: dict[str, Any], source: str = "<suite>", default_name: str = "suite",
                path: Path | None = None) -> Suite:
    """Validate a suite given as a dict (the parsed TOML)."""
    check_keys(data, TOP_KEYS, source, "")
    name = data.get("name", default_name)
    check_type(name, str, source, "name")
    check_name(name, source, "name" if "name" in data else "name (the file name)")
    backbones = str_list(data.get("backbones"), source, "backbones", required=True)
    check_unique(backbones, source, "backbones")
    for b in backbones:
        check_backbone(b, source, "backbones")
    variants = parse_variants(data.get("variants"), source)
    measure = data.get("measure")
    kinds = list_kinds()
    if not isinstance(measure, dict) or not measure:
        raise UserError(f"{source}: [measure] must have at least one of {', '.join(f'[measure.{k}]' for k in kinds)}")
    check_keys(measure, kinds, source, "measure.")
    parsed = {}
    labels = {v[0] for v in variants}
    presets = {label: preset for label, preset in presets_of(data.get("variants"), source)}
    memory_cap = data.get("memory_cap")
    if memory_cap is not None:
        from .processes.limits import parse_memory_cap

        try:
            parse_memory_cap(memory_cap)
        except UserError as exc:
            raise UserError(f"{source}: memory_cap: {exc}") from None
    for kind, tables in measure.items():
        tables = tables if isinstance(tables, list) else [tables]
        parsed[kind] = [parse_measure(kind, opts, source) for opts in tables]
        for opts in parsed[kind]:
            if opts["variants"] is not None:
                opts["variants"] = str_list(opts["variants"], source, f"measure.{kind}.variants")
                for label in opts["variants"]:
                    if label not in labels:
                        raise UserError(f"{source}: measure.{kind}.variants: "
                                        f"{unknown_choice('variant', label, labels)}")
    check_presets(variants, presets, backbones, parsed, source)
    return Suite(name, path, str(data.get("description", "")), backbones, variants, parsed, presets, memory_cap)
