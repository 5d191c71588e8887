"""Validate a suite's `variants`: names, `"*"` (every registered variant, plugins included), or tables with a
config, a label and a preset; labels are distinct and every preset exists for the backbones it is measured on."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .suite_checks import check_keys, check_name, check_type, duplicates

VARIANT_KEYS = ("name", "variant", "config", "preset")


def parse_variants(value: Any, source: str) -> list[tuple[str, str, dict]]:
    """(label, registered name, config as written) of each entry; `"*"` is every registered variant."""
    from ..models.registry import get_variant, list_variants

    if value is None:
        raise UserError(f"{source}: variants is required (a list of names, \"*\" for all, or tables)")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UserError(f"{source}: variants must be a non-empty list")
    out: list[tuple[str, str, dict]] = []
    for i, entry in enumerate(value):
        where = f"variants[{i}]"
        if entry == "*":
            for n in list_variants():
                check_name(n, source, f"{where} (registered variant {n[:20]!r}...)")
                out.append((n, n, {}))
            continue
        if isinstance(entry, str):
            entry = {"variant": entry}
        if not isinstance(entry, dict):
            raise UserError(f"{source}: {where} must be a variant name or a table {{variant=..., config=...}}")
        check_keys(entry, VARIANT_KEYS, source, f"{where}.")
        vname = entry.get("variant")
        if not isinstance(vname, str):
            raise UserError(f"{source}: {where}.variant must name a variant; valid: {', '.join(list_variants())}")
        try:
            cls = get_variant(vname)
            cfg = entry.get("config", {})
            if not isinstance(cfg, dict):
                raise UserError(f"{where}.config must be a table of key = value")
            full = cls.validate(cfg)  # checked here; defaults and preset are resolved once, when the model is built
            if "policy" in full:
                from ..models.sites import validate_policy

                validate_policy(full["policy"])
        except UserError as exc:
            raise type(exc)(f"{source}: {where}: {exc}") from None
        label = entry.get("name", vname)
        check_type(label, str, source, f"{where}.name")
        check_name(label, source, f"{where}.name" if "name" in entry else where)
        out.append((label, vname, dict(cfg)))
    dupes = duplicates([v[0] for v in out])
    if dupes:
        raise UserError(f"{source}: variants: duplicate label(s) {', '.join(dupes)}; give each config a distinct name")
    return out


def check_presets(variants: list[tuple[str, str, dict]], presets: dict[str, str], backbones: list[str],
                  measure: dict[str, list[dict[str, Any]]], source: str) -> None:
    """Every preset exists for every backbone its variant is measured on (not only when a cell fails)."""
    from ..models.registry import get_variant

    for i, (label, vname, _) in enumerate(variants):
        if label not in presets:
            continue
        used = {b for tables in measure.values() for opts in tables
                if opts["variants"] is None or label in opts["variants"] for b in opts["backbones"] or backbones}
        for backbone in sorted(used):
            try:
                get_variant(vname).preset_config(presets[label], backbone)
            except UserError as exc:
                raise UserError(f"{source}: variants[{i}].preset: {exc}") from None


def presets_of(value: Any, source: str) -> list[tuple[str, str]]:
    """(label, preset) of the variant tables that name a preset (the tables were validated before)."""
    out = []
    for i, entry in enumerate(value if isinstance(value, list) else []):
        if isinstance(entry, dict) and entry.get("preset") is not None:
            check_type(entry["preset"], str, source, f"variants[{i}].preset")
            out.append((entry.get("name", entry["variant"]), entry["preset"]))
    return out
