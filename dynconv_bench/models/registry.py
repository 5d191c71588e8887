"""The variant registry: the `dynconv_bench.variants` entry point group, plugin files, and a decorator.

Entry points are loaded lazily (on the first lookup), so importing dynconv_bench imports no plugin;
a packaged variant (built-ins included) is named once, by its entry point.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pkgutil
import sys
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from ..discovery import (
    ARCHITECTURE_GROUP,
    EXECUTOR_GROUP,
    FORMAT_GROUP,
    RELEASE_GROUP,
    VARIANT_GROUP,
    entry_points,
    load_group,
)
from ..errors import UserError, unknown_choice
from .variant import Variant

# the groups this project's pyproject.toml declares entry points in (installation_problems compares them)
GROUPS = (VARIANT_GROUP, ARCHITECTURE_GROUP, RELEASE_GROUP, FORMAT_GROUP, EXECUTOR_GROUP)

_VARIANTS: dict[str, type[Variant]] = {}
_PLUGIN_FILES: dict[str, Path] = {}  # module name given to a loaded plugin file -> the file
_PACKAGES: dict[type, str] = {}  # variant class -> the distribution whose entry point registered it
_SHADOWED: dict[str, type[Variant]] = {}  # name -> the packaged variant a plugin file registered over
THIS_DISTRIBUTION = "dynconv-bench"  # its entry points are the built-in variants
_entry_points_loaded = False
_architectures_loaded = False


def register_variant(cls: type[Variant]) -> type[Variant]:
    """Class decorator for a plugin file: make a Variant subclass available under its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise TypeError(f"register_variant expects a Variant subclass, got {cls!r}")
    if not cls.name:
        raise TypeError(f"{cls.__name__} must set the class attribute `name`")
    existing = _VARIANTS.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        warnings.warn(f"variant {cls.name!r} re-registered by {cls.__module__}.{cls.__qualname__}", stacklevel=2)
    _VARIANTS[cls.name] = cls
    return cls


def _register_entry_point(ep: EntryPoint) -> None:
    obj = ep.load()
    if not (isinstance(obj, type) and issubclass(obj, Variant)):
        raise TypeError(f"{ep.value} is not a Variant subclass")
    own = obj.__dict__.get("name")
    if own and own != ep.name:
        raise TypeError(f"class name {own!r} disagrees with its entry point name {ep.name!r}")
    if ep.name in _VARIANTS:  # a plugin file registered the name first; it keeps it
        return
    obj.name = ep.name  # the entry point is the one source of a packaged variant's name
    _VARIANTS[ep.name] = obj
    _PACKAGES[obj] = getattr(ep.dist, "name", None) or ep.value.split(":")[0]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    load_group(VARIANT_GROUP, "variant plugin", _register_entry_point)


def load_architectures() -> None:
    """Import (once) the modules that register model architectures with timm."""
    global _architectures_loaded
    if _architectures_loaded:
        return
    _architectures_loaded = True
    load_group(ARCHITECTURE_GROUP, "architectures")


def architecture_modules() -> list[str]:
    """Module names (last component, as timm keys them) of the architecture entry points."""
    return [ep.value.split(":")[0].rsplit(".", 1)[-1] for ep in entry_points(ARCHITECTURE_GROUP)]


def load_plugin_file(path: str | Path) -> list[str]:
    """Import a Python file that registers variants; return the names it registered.

    A file that registers no variant is a UserError: it is almost always the wrong file or a missing decorator.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}")
    before = dict(_all())
    mod_name = f"dynconv_bench_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import plugin file {path} (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    _PLUGIN_FILES[mod_name] = path
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from None
    # new names, and names the file registered again (a second load of the same file is not "nothing")
    names = sorted(n for n, cls in _VARIANTS.items() if before.get(n) is not cls or cls.__module__ == mod_name)
    for name in names:
        if before.get(name) in _PACKAGES:  # a packaged (e.g. built-in) variant of that name is now hidden
            _SHADOWED[name] = before[name]
    if not names:
        raise UserError(f"plugin file {path} registered no variant: decorate a Variant subclass with "
                        f"@register_variant (see docs/plugin-api.md)")
    return names


def plugin_source(name: str) -> str | None:
    """Where a registered variant comes from: its plugin file, package or module; None for a built-in."""
    cls = get_variant(name)
    if cls.__module__ in _PLUGIN_FILES:
        return str(_PLUGIN_FILES[cls.__module__])
    package = _PACKAGES.get(cls)
    if package is not None:
        return None if package.replace("_", "-").lower() == THIS_DISTRIBUTION else f"package {package}"
    return cls.__module__


def shadowed_variants() -> dict[str, str]:
    """Packaged variants a plugin file registered over: name -> the file that took the name."""
    return {n: str(_PLUGIN_FILES.get(_VARIANTS[n].__module__, _VARIANTS[n].__module__)) for n in _SHADOWED
            if _VARIANTS.get(n) is not _SHADOWED[n]}


def variant_source(name: str) -> dict[str, str]:
    """Where the code of variant `name` comes from, as every result row records it.

    {"from": "built-in" | "entry point", "package", "version"}, {"from": "plugin file", "path", "sha256"},
    or {"from": "module", "module"} for a class registered by code already imported.
    """
    from importlib.metadata import PackageNotFoundError, version

    cls = get_variant(name)
    if cls.__module__ in _PLUGIN_FILES:
        path = _PLUGIN_FILES[cls.__module__].resolve()
        return {"from": "plugin file", "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    package = _PACKAGES.get(cls)
    if package is None:
        return {"from": "module", "module": cls.__module__}
    try:
        ver = version(package)
    except PackageNotFoundError:
        ver = "unknown"
    builtin = package.replace("_", "-").lower() == THIS_DISTRIBUTION
    return {"from": "built-in" if builtin else "entry point", "package": package, "version": ver}


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


# -- installation check ------------------------------------------------------------------------
def installation_problems(pyproject: Path | None = None, plugin_dirs: list[Path] | None = None,
                          installed: list[EntryPoint] | None = None) -> list[str]:
    """Where the installed entry points and the source tree disagree (e.g. a forgotten reinstall).

    Compares the entry points declared in the source tree's pyproject.toml with the installed ones,
    and lists modules of the built-in variants folder that no installed entry point names.
    Defaults: this checkout's pyproject.toml and variants folder (none for a wheel install).
    """
    if installed is None:
        installed = [ep for group in GROUPS for ep in entry_points(group)]
    if pyproject is None or plugin_dirs is None:
        src_pyproject, src_dirs = _source_tree()
        pyproject = src_pyproject if pyproject is None else pyproject
        plugin_dirs = src_dirs if plugin_dirs is None else plugin_dirs
    problems: list[str] = []
    have = {(ep.group, ep.name): ep.value for ep in installed}
    if pyproject is not None and pyproject.is_file():
        import tomllib

        declared_eps = tomllib.loads(pyproject.read_text()).get("project", {}).get("entry-points", {})
        declared = {(g, n): v for g in GROUPS for n, v in declared_eps.get(g, {}).items()}
        for (group, name), value in sorted(declared.items()):
            if (group, name) not in have:
                problems.append(f"{pyproject} declares {group} entry point {name!r} ({value}) but it is not "
                                "installed: reinstall (pip install -e .)")
            elif have[(group, name)] != value:
                problems.append(f"entry point {name!r} is installed as {have[(group, name)]} but {pyproject} "
                                f"says {value}: reinstall (pip install -e .)")
    referenced = {v.split(":")[0].rsplit(".", 1)[-1] for v in have.values()}  # module stems
    for folder in plugin_dirs:
        for info in pkgutil.iter_modules([str(folder)]):
            if not info.name.startswith("_") and not info.ispkg and info.name not in referenced:  # a package: not a variant
                problems.append(f"{folder / info.name}.py is not named by any installed entry point: add it "
                                "to pyproject.toml and reinstall (pip install -e .)")
    return problems


def _source_tree() -> tuple[Path | None, list[Path]]:
    """This checkout's pyproject.toml and variants folder, when the package runs from a source tree."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None, []
    folder = root / "variants"
    return pyproject, [folder] if folder.is_dir() else []
