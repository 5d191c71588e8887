"""Suite files (TOML): which backbones and variants to measure, and how; validated, then expanded to cells."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import UserError, did_you_mean, unknown_choice
from ..files import show_path
from ..measures import check_options, list_kinds, options_of
from ..measures import options as measure_options
from ..measures.options import EXPANDED, MODES, MeasureOptions
from ..models.modelspec import ModelSpec

MAX_NAME = 64  # characters of a suite name or variant label (they name figure files)
TOP_KEYS = ("name", "description", "backbones", "variants", "measure", "memory_cap")
VARIANT_KEYS = ("name", "variant", "config", "preset")
# what identifies a cell in the store (rerunning a suite skips keys already done)
KEY_FIELDS = ("suite", "backbone", "variant", "config_hash", "kind", "options_hash")


@dataclass(frozen=True)
class Cell:
    """One measurement: a backbone, a configured variant, a metric kind and its options."""

    suite: str
    backbone: str
    variant: str  # label in reports (a variant name, or a named configuration such as "<variant>-4x")
    variant_name: str  # the registered variant
    config: dict[str, Any] = field(hash=False)  # what the user wrote: defaults and preset are resolved when built
    kind: str = "params"
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    preset: str | None = None  # a variant's named configuration for the backbone (create_model(preset=...))
    source: dict[str, str] | None = field(default=None, hash=False)  # where the variant's code comes from (None: built-in)

    @property
    def config_hash(self) -> str:
        """Hash of the config with the variant's defaults filled in (so writing a default changes nothing)."""
        spec: dict[str, Any] = {"variant": self.variant_name, "config": _with_defaults(self.variant_name, self.config)}
        if self.preset is not None:  # only then: hashes of cells without a preset stay what they were
            spec["preset"] = self.preset
        if self.source is not None:  # a plugin's cells are its own: done only for the same file or package version
            spec["source"] = self.source
        return stable_hash(spec)

    @property
    def options_hash(self) -> str:
        return stable_hash(self.options)

    @property
    def key(self) -> tuple[str, ...]:
        """The values of KEY_FIELDS: what identifies a cell in the store."""
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    @property
    def opts(self) -> MeasureOptions:
        """The cell's options, typed, with the kind's defaults filled in."""
        return options_of(self.kind, self.options)

    def model_spec(self, plugins: Sequence[str] = ()) -> ModelSpec:
        """What builds this cell's model (in this process or a fresh one)."""
        return ModelSpec(self.backbone, self.variant_name, self.config, tuple(plugins), self.preset)

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items()
                        if k in _LABEL_OPTIONS or (k in _LABEL_UNLESS and v != _LABEL_UNLESS[k]))
        return f"{self.backbone}/{self.variant}/{self.kind}" + (f"[{opts}]" if opts else "")

    @property
    def stored_config(self) -> dict[str, Any]:
        """The config as the store keeps it: what the user wrote, with the preset's name when there is one."""
        extra = {"preset": self.preset, "source": self.source}
        return {**self.config, **{k: v for k, v in extra.items() if v is not None}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        """A cell from `to_dict()` or a store row (whose config carries the preset)."""
        config = dict(d["config"] or {})
        preset = d.get("preset") or config.pop("preset", None)
        source = d.get("source") or config.pop("source", None)
        return cls(**{k: d[k] for k in ("suite", "backbone", "variant", "variant_name", "kind", "options")},
                   config=config, preset=preset, source=source)


def _with_defaults(variant: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with the variant's defaults filled in; a bad one is its ConfigError (never another hash)."""
    from ..models.registry import get_variant, list_variants

    if variant not in list_variants():  # a variant not registered in this process: hash what was written
        return dict(config)
    return get_variant(variant).validate(config)


_LABEL_OPTIONS = ("mode", "batch_size", "dataset", "seed")
_LABEL_UNLESS = {"device": "cpu", "precision": "fp32", "channels_last": False, "cuda_graph": False}  # shown when set


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
    memory_cap: str | int | float | None = None  # per-cell memory cap (see dynconv_bench.metrics.limits)

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


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-able object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _expand(opts: dict[str, Any], backbone: str) -> list[dict[str, Any]]:
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
    from ..models.backbones import list_backbones
    from ..models.registry import get_variant, list_variants

    _check_keys(data, TOP_KEYS, source, "")
    name = data.get("name", default_name)
    _check_type(name, str, source, "name")
    _check_name(name, source, "name" if "name" in data else "name (the file name)")
    backbones = _str_list(data.get("backbones"), source, "backbones", required=True)
    _check_unique(backbones, source, "backbones")
    for b in backbones:
        _check_backbone(b, source, "backbones", list_backbones)
    variants = _parse_variants(data.get("variants"), source, get_variant, list_variants)
    measure = data.get("measure")
    kinds = list_kinds()
    if not isinstance(measure, dict) or not measure:
        raise UserError(f"{source}: [measure] must have at least one of {', '.join(f'[measure.{k}]' for k in kinds)}")
    _check_keys(measure, kinds, source, "measure.")
    parsed = {}
    labels = {v[0] for v in variants}
    presets = {label: preset for label, preset in _presets(data.get("variants"), source)}
    memory_cap = data.get("memory_cap")
    if memory_cap is not None:
        from ..metrics.limits import parse_memory_cap

        try:
            parse_memory_cap(memory_cap)
        except UserError as exc:
            raise UserError(f"{source}: memory_cap: {exc}") from None
    for kind, tables in measure.items():
        tables = tables if isinstance(tables, list) else [tables]
        parsed[kind] = [_parse_measure(kind, opts, source, list_backbones) for opts in tables]
        for opts in parsed[kind]:
            if opts["variants"] is not None:
                opts["variants"] = _str_list(opts["variants"], source, f"measure.{kind}.variants")
                for label in opts["variants"]:
                    if label not in labels:
                        raise UserError(f"{source}: measure.{kind}.variants: "
                                        f"{unknown_choice('variant', label, labels)}")
    _check_presets(variants, presets, backbones, parsed, source)
    return Suite(name, path, str(data.get("description", "")), backbones, variants, parsed, presets, memory_cap)


def _check_presets(variants: list[tuple[str, str, dict]], presets: dict[str, str], backbones: list[str],
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


def _presets(value: Any, source: str) -> list[tuple[str, str]]:
    """(label, preset) of the variant tables that name a preset (the tables were validated before)."""
    out = []
    for i, entry in enumerate(value if isinstance(value, list) else []):
        if isinstance(entry, dict) and entry.get("preset") is not None:
            _check_type(entry["preset"], str, source, f"variants[{i}].preset")
            out.append((entry.get("name", entry["variant"]), entry["preset"]))
    return out


def _check_keys(table: dict[str, Any], valid: tuple[str, ...] | list[str], source: str, prefix: str) -> None:
    for key in table:
        if key not in valid:
            raise UserError(f"{source}: unknown key '{prefix}{key}'{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


def _check_type(value: Any, expected: type | tuple[type, ...], source: str, key: str) -> None:
    if not isinstance(value, expected) or (isinstance(value, bool) and expected in (int, (int, float))):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise UserError(f"{source}: {key} = {value!r} must be {names}")


def _str_list(value: Any, source: str, key: str, required: bool = False) -> list[str]:
    if value is None and not required:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{source}: {key} must be a non-empty list of names")
    return value


def _check_unique(values: list[Any], source: str, key: str) -> None:
    dupes = _duplicates(values)
    if dupes:
        raise UserError(f"{source}: {key}: duplicate value(s) {', '.join(dupes)}")


def _duplicates(values: list[Any], shown: int = 10) -> list[str]:
    """The values that occur more than once (the first `shown`, as text); linear, for suites of millions of entries."""
    counts = Counter(values)
    dupes = sorted(str(v) for v, n in counts.items() if n > 1)
    return dupes[:shown] + ([f"... ({len(dupes) - shown} more)"] if len(dupes) > shown else [])


def _check_name(name: str, source: str, key: str) -> None:
    """Suite names and variant labels name figure files: printable, and short enough for any file system."""
    if not name.strip() or len(name) > MAX_NAME or any(unicodedata.category(c) == "Cc" for c in name):
        raise UserError(f"{source}: {key} = '{show_path(name)}' must be 1 to {MAX_NAME} characters without control "
                        f"characters (it names figure files and table rows)")


def _check_backbone(name: str, source: str, key: str, list_backbones: Any) -> None:
    import timm

    from ..models.registry import load_architectures

    load_architectures()
    if not timm.is_model(name):
        raise UserError(f"{source}: {key}: {unknown_choice('backbone', name, list_backbones())}")


def _parse_variants(value: Any, source: str, get_variant: Any, list_variants: Any) -> list[tuple[str, str, dict]]:
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
                _check_name(n, source, f"{where} (registered variant {n[:20]!r}...)")
                out.append((n, n, {}))
            continue
        if isinstance(entry, str):
            entry = {"variant": entry}
        if not isinstance(entry, dict):
            raise UserError(f"{source}: {where} must be a variant name or a table {{variant=..., config=...}}")
        _check_keys(entry, VARIANT_KEYS, source, f"{where}.")
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
        _check_type(label, str, source, f"{where}.name")
        _check_name(label, source, f"{where}.name" if "name" in entry else where)
        out.append((label, vname, dict(cfg)))
    dupes = _duplicates([v[0] for v in out])
    if dupes:
        raise UserError(f"{source}: variants: duplicate label(s) {', '.join(dupes)}; give each config a distinct name")
    return out


def _parse_measure(kind: str, opts: Any, source: str, list_backbones: Any) -> dict[str, Any]:
    where = f"measure.{kind}"
    if not isinstance(opts, dict):
        raise UserError(f"{source}: [{where}] must be a table")
    try:
        out = check_options(kind, opts, where)  # types, ranges, choices and the kind's own checks
    except UserError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    if out["backbones"] is not None:
        out["backbones"] = _str_list(out["backbones"], source, f"{where}.backbones")
        _check_unique(out["backbones"], source, f"{where}.backbones")
        for b in out["backbones"]:
            _check_backbone(b, source, f"{where}.backbones", list_backbones)
    for key in ("batch_sizes", "seeds"):
        if key in out:
            vals = out[key]
            if not isinstance(vals, list) or not vals or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in vals):
                raise UserError(f"{source}: {where}.{key} must be a non-empty list of integers")
            low, high = (1, measure_options.MAX_BATCH) if key == "batch_sizes" else (0, measure_options.MAX_SEED)
            if not all(low <= v <= high for v in vals):
                raise UserError(f"{source}: {where}.{key} must be integers in [{low}, {high}]")
            _check_unique(vals, source, f"{where}.{key}")
    if out.get("input_size") is not None:
        size = out["input_size"]
        if isinstance(size, int) and not isinstance(size, bool):
            size = [3, size, size]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                  and v > 0 for v in size)):
            raise UserError(f"{source}: {where}.input_size must be an integer or [channels, height, width]")
        channels, side = measure_options.MAX_CHANNELS, measure_options.MAX_SIDE
        if size[0] > channels or max(size[1:]) > side:
            raise UserError(f"{source}: {where}.input_size {size} is too large: at most {channels} channels and "
                            f"{side} pixels a side")
        out["input_size"] = size
    if "modes" in out:
        out["modes"] = _str_list(out["modes"], source, f"{where}.modes")
        for m in out["modes"]:
            if m not in MODES:
                raise UserError(f"{source}: {where}.modes: {unknown_choice('mode', m, MODES)}")
    if kind == "accuracy" and out.get("datasets") and out.get("checkpoint") is None:
        _check_recipe_overrides(out, source, where)
    return out


def _int_in(low: int, high: int) -> tuple[str, Any]:
    return (f"an integer in [{low}, {high}]",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high)


def _number_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> tuple[str, Any]:
    text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def ok(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return text, ok


def _choice(*names: str) -> tuple[str, Any]:
    return f"one of {', '.join(names)}", lambda v: isinstance(v, str) and v in names


_BOOL = ("true or false", lambda v: isinstance(v, bool))
_TEXT = ("a string", lambda v: isinstance(v, str))
# Every recipe field an accuracy table's `overrides` may set: what it must be (training/recipes.py's Recipe; the
# ranges are those a run can train with, so that a value passing --dry-run cannot fail inside the cell).
RECIPE_OVERRIDES: dict[str, tuple[str, Any]] = {
    "epochs": _int_in(1, 10_000),
    "batch_size": _int_in(1, measure_options.MAX_BATCH),
    "lr": _number_in(0, 100, low_open=True),
    "momentum": _number_in(0, 1),
    "nesterov": _BOOL,
    "weight_decay": _number_in(0, 1),
    "schedule": _choice("cosine", "step"),
    "warmup_epochs": _number_in(0, 10_000),
    "warmup_start_factor": _number_in(0, 1),
    "min_lr": _number_in(0, 100),
    "milestones": ("a list of increasing epochs, integers in [1, 10000]",
                   lambda v: isinstance(v, list) and all(_int_in(1, 10_000)[1](m) for m in v)
                   and all(a < b for a, b in zip(v, v[1:]))),
    "gamma": _number_in(0, 1, low_open=True),
    "label_smoothing": _number_in(0, 1, high_open=True),
    "amp": _BOOL,
    "grad_clip": _number_in(0, 1e6, low_open=True),
    "image_size": _int_in(1, measure_options.MAX_SIDE),
    "eval_batch_size": _int_in(1, measure_options.MAX_BATCH),
    "eval_every": _int_in(1, 10_000),
    "workers": _int_in(0, 256),
    "bn_recalibration_batches": _int_in(0, 1_000_000),
    "divergence_factor": _number_in(1, 1e6, low_open=True),
    "dataset": _TEXT,
    "source": _TEXT,
    "notes": _TEXT,
}


def _check_recipe_overrides(out: dict[str, Any], source: str, where: str) -> None:
    """Each recipe override of the right type and in range (one line naming the key and what is valid), and the
    global batch of every recipe the table trains with divisible by its `gpus` (each worker gets batch / gpus)."""
    from ..training.recipes import RECIPES, default_recipe

    overrides = out.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{source}: {where}.overrides must be a table of recipe settings, e.g. {{image_size = 8}}")
    for key, value in overrides.items():
        rule = RECIPE_OVERRIDES.get(key)
        if rule is not None and not rule[1](value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise UserError(f"{source}: {where}.overrides.{key} = {show_path(shown)} is not valid: {key} must be "
                            f"{rule[0]}")
    gpus = out.get("gpus") or 1
    if not isinstance(gpus, int) or gpus <= 1:
        return
    try:
        names = [out["recipe"]] if out.get("recipe") else [default_recipe(d) for d in out["datasets"]]
        recipes = {n: RECIPES[n] for n in names}
    except (KeyError, UserError):
        return  # the kind's own check names an unknown recipe
    for name, recipe in recipes.items():
        batch = overrides.get("batch_size", recipe.batch_size)
        if batch % gpus:
            raise UserError(f"{source}: {where}: gpus = {gpus} must divide the batch size {batch} (recipe {name}"
                            f"{', overrides.batch_size' if 'batch_size' in overrides else ''}): each of the gpus "
                            f"workers trains batch_size / gpus images per step")

