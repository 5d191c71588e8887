"""The variant registry: a decorator, the `dynconv_bench.variants` entry point group, and plugin files."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import UserError, unknown_choice
from .variant import Variant

VARIANT_GROUP = "dynconv_bench.variants"
ARCHITECTURE_GROUP = "dynconv_bench.architectures"

_VARIANTS: dict[str, type[Variant]] = {}
_entry_points_loaded = False


def register_variant(cls: type[Variant]) -> type[Variant]:
    """Class decorator: make a Variant subclass available under its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise TypeError(f"register_variant expects a Variant subclass, got {cls!r}")
    if not cls.name:
        raise TypeError(f"{cls.__name__} must set the class attribute `name`")
    existing = _VARIANTS.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        warnings.warn(f"variant {cls.name!r} re-registered by {cls.__module__}.{cls.__qualname__}", stacklevel=2)
    _VARIANTS[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=VARIANT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the suite
            warnings.warn(f"could not load variant plugin {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
            continue
        if isinstance(obj, type) and issubclass(obj, Variant) and obj.name not in _VARIANTS:
            register_variant(obj)


def load_architectures() -> None:
    """Import the modules that register model architectures with timm."""
    for ep in entry_points(group=ARCHITECTURE_GROUP):
        try:
            ep.load()
        except Exception as exc:
            warnings.warn(f"could not load architectures {ep.name!r} ({ep.value}): {exc}", stacklevel=2)


def load_plugin_file(path: str | Path) -> list[str]:
    """Import a Python file that registers variants; return the names it added."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}")
    before = set(_all())
    mod_name = f"dynconv_bench_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import plugin file {path} (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from None
    return sorted(set(_all()) - before)


def _all() -> dict[str, type[Variant]]:
    _load_entry_points()
    return _VARIANTS


def list_variants() -> list[str]:
    """Names of all registered variants (built-ins and plugins)."""
    return sorted(_all())


def get_variant(name: str) -> type[Variant]:
    """The Variant class registered under `name`."""
    variants = _all()
    if name not in variants:
        raise unknown_choice("variant", name, variants)
    return variants[name]


def make_variant(name: str | Variant, **cfg: Any) -> Variant:
    """A configured Variant instance from a name (or pass an instance through)."""
    if isinstance(name, Variant):
        if cfg:
            return type(name)(**{**name.cfg, **cfg})
        return name
    return get_variant(name)(**cfg)
