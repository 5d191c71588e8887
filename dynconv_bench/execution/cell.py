"""What one cell is: a backbone, a configured variant, a metric kind and its options, and the hashes that key it
in the store. Measuring a cell is execution/measure_cell.py; making cells from a suite is execution/suite_cells.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..measures import options_of
from ..measures.options import MeasureOptions
from ..models.modelspec import ModelSpec

# what identifies a cell in the store (rerunning a suite skips keys already done)
KEY_FIELDS = ("suite", "backbone", "variant", "config_hash", "kind", "options_hash")
LABEL_OPTIONS = ("mode", "batch_size", "dataset", "seed")  # options a cell's label always shows
LABEL_UNLESS = {"device": "cpu", "precision": "fp32", "channels_last": False, "cuda_graph": False}  # shown when set


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
        spec: dict[str, Any] = {"variant": self.variant_name, "config": with_defaults(self.variant_name, self.config)}
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
        return cell_label(self.backbone, self.variant, self.kind, self.options)

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


def cell_label(backbone: str, variant: str, kind: str, options: dict[str, Any]) -> str:
    """How runs and reports name a cell: `backbone/variant/kind[options it shows]`."""
    opts = label_options(options)
    return f"{backbone}/{variant}/{kind}" + (f"[{opts}]" if opts else "")


def label_options(options: dict[str, Any]) -> str:
    """The options a cell's label shows: mode, batch size, dataset, seed, and device etc. where not the default."""
    return ",".join(f"{k}={v}" for k, v in options.items()
                    if k in LABEL_OPTIONS or (k in LABEL_UNLESS and v != LABEL_UNLESS[k]))


def with_defaults(variant: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with the variant's defaults filled in; a bad one is its ConfigError (never another hash)."""
    from ..models.registry import get_variant, list_variants

    if variant not in list_variants():  # a variant not registered in this process: hash what was written
        return dict(config)
    return get_variant(variant).validate(config)


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-able object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
