"""What builds a cell's model: backbone, variant, config, plugin files and preset, in one frozen, picklable spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A backbone converted by a configured variant; `build()` makes the model in any process.

    `plugins` are the plugin files that register the variant, so a fresh subprocess can build it too.
    """

    backbone: str
    variant: str = "static"
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    plugins: tuple[str, ...] = ()
    preset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", dict(self.config))
        object.__setattr__(self, "plugins", tuple(str(p) for p in self.plugins))

    def load_plugins(self) -> None:
        """Import the plugin files unless the variant is registered already (e.g. by the CLI's --plugin)."""
        from .registry import list_variants, load_plugin_file

        if self.plugins and self.variant not in list_variants():
            for path in self.plugins:
                load_plugin_file(path)

    def build(self, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
        """The backbone with `num_classes` outputs and `in_chans` input channels, converted by the variant."""
        from .convert import convert, create_model
        from .registry import load_architectures

        self.load_plugins()
        load_architectures()
        cfg = dict(self.config)
        if self.preset is not None:
            cfg["preset"] = self.preset
        if in_chans == 3:
            return create_model(self.backbone, self.variant, num_classes=num_classes, **cfg)
        import timm

        from ..errors import UserError

        if not timm.is_model(self.backbone):
            return create_model(self.backbone, self.variant, num_classes=num_classes, **cfg)  # its error message
        if self.preset is not None:
            raise UserError(f"preset {self.preset!r} needs a 3-channel input (this dataset has {in_chans})")
        model = timm.create_model(self.backbone, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        return convert(model, self.variant, **cfg)

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "variant": self.variant, "config": dict(self.config),
                "plugins": list(self.plugins), "preset": self.preset}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(d["backbone"], d.get("variant", "static"), d.get("config") or {}, tuple(d.get("plugins") or ()),
                   d.get("preset"))
