"""The common variant interface: a named, configurable recipe that replaces selected convs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..errors import ConfigError, did_you_mean
from .config_param import Param  # noqa: F401 (variants import Param from here)
from .sites import ConvSite

# maxima of the variants' config values: past these a model cannot be built in any memory
MAX_KERNELS = 64  # kernels (experts) per layer; the papers use up to 8
MAX_CHANNELS = 4096  # attention widths and reduction ratios


@dataclass
class StageContext:
    """What a variant sees of one stage: its eligible convs in model order."""

    stage: str
    sites: list[ConvSite]
    model: nn.Module = field(repr=False)

    def groups(self) -> list[list[ConvSite]]:
        """Sites with identical weight shape, stride, dilation and groups, in model order."""
        by_key: dict[tuple, list[ConvSite]] = {}
        for site in self.sites:
            by_key.setdefault(site.sharing_key, []).append(site)
        return list(by_key.values())


class Variant:
    """Base class of every variant (built-in or plugin).

    Subclasses set the class attributes and override `convert_conv` (per-layer variants) or
    `convert_stage` (variants whose layers share state across a stage). `name` is set by the
    registry from the entry point of a packaged variant; a plugin file sets it itself.
    `presets` maps a preset name (e.g. "paper") to {backbone: config} of published configurations;
    `recipes` maps a training recipe name to the fields of its `training.Recipe` (the papers' own schedules).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    year: ClassVar[int | None] = None
    params: ClassVar[dict[str, Param]] = {}
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    recipes: ClassVar[dict[str, dict[str, Any]]] = {}
    converts_layers: ClassVar[bool] = True  # False for a baseline that converts nothing by design

    def __init__(self, **cfg: Any) -> None:
        self.cfg = self.validate(cfg)

    # -- configuration ---------------------------------------------------------------------
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {k: p.default for k, p in cls.params.items()}

    @classmethod
    def validate(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """Return the full config (defaults + `cfg`), rejecting unknown keys and bad values."""
        out = cls.default_config()
        label = cls.name or cls.__name__
        for key, value in cfg.items():
            if key not in cls.params:
                valid = sorted(cls.params)
                raise ConfigError(f"{label}: unknown config key {key!r}{did_you_mean(key, valid)}; "
                                  f"valid keys: {', '.join(valid) or '(none)'}")
            out[key] = cls.params[key].check(key, value, label)
        return out

    @classmethod
    def preset_config(cls, preset: str, backbone: str) -> dict[str, Any]:
        """The config of a named preset for `backbone` (ConfigError naming the backbones that have one)."""
        label = cls.name or cls.__name__
        if preset not in cls.presets:
            valid = ", ".join(sorted(cls.presets)) or "(none)"
            raise ConfigError(f"{label}: unknown preset {preset!r}; valid presets: {valid}")
        by_backbone = cls.presets[preset]
        if backbone not in by_backbone:
            raise ConfigError(f"{label}: no {preset!r} preset for backbone {backbone!r}; "
                              f"backbones with one: {', '.join(sorted(by_backbone))}")
        return dict(by_backbone[backbone])

    # -- conversion ------------------------------------------------------------------------
    def policy(self) -> str | Callable[[ConvSite], bool]:
        return self.cfg.get("policy", "all")

    def convert_model(self, stages: list[StageContext]) -> dict[str, nn.Module]:
        """Return replacements for the whole model, given every stage's eligible convs.

        The default converts stage by stage; a variant whose layers share state across stages
        (e.g. a network-wide kernel warehouse) overrides this.
        """
        out: dict[str, nn.Module] = {}
        for ctx in stages:
            out.update(self.convert_stage(ctx))
        return out

    def convert_stage(self, ctx: StageContext) -> dict[str, nn.Module]:
        """Return replacements {qualified conv name: new module} for one stage.

        The default converts each site on its own; cross-layer variants override this.
        """
        out: dict[str, nn.Module] = {}
        for site in ctx.sites:
            new = self.convert_conv(site)
            if new is not None and new is not site.conv:
                out[site.name] = new
        return out

    def convert_conv(self, site: ConvSite) -> nn.Module | None:
        """Return the module that replaces one conv (None leaves it as it is)."""
        return None

    def why_nothing_converted(self, stages: list[StageContext]) -> str:
        """Why `convert_model` replaced none of the selected convs (shown when a conversion converts nothing)."""
        n = sum(len(ctx.sites) for ctx in stages)
        return f"{self.name or type(self).__name__} replaced none of the {n} convs its policy selects"

    def finalize(self, model: nn.Module) -> None:
        """Hook run once after all replacements (e.g. to tie shared state)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, paper, defaults, every key's type/range/help, and the backbones of each preset."""
        return {"name": cls.name, "paper": cls.paper, "year": cls.year, "defaults": cls.default_config(),
                "params": {k: p.describe() for k, p in cls.params.items()},
                "presets": {name: sorted(by_backbone) for name, by_backbone in cls.presets.items()}}


class TrainingProgress(float):
    """How far training is: the float value is the fraction done, in [0, 1]; attributes give the iteration.

    `iteration` counts optimiser steps done, `iters_per_epoch` and `total_iters` describe the run; they are
    None when the caller only knows the fraction. A plain float works wherever a fraction is expected.
    """

    iteration: int | None
    iters_per_epoch: int | None
    total_iters: int | None

    def __new__(cls, fraction: float, iteration: int | None = None, iters_per_epoch: int | None = None,
                total_iters: int | None = None) -> TrainingProgress:
        obj = super().__new__(cls, min(max(float(fraction), 0.0), 1.0))
        obj.iteration, obj.iters_per_epoch, obj.total_iters = iteration, iters_per_epoch, total_iters
        return obj

    @classmethod
    def at(cls, iteration: int, iters_per_epoch: int, total_iters: int) -> TrainingProgress:
        """Progress after `iteration` optimiser steps of a run of `total_iters` steps."""
        return cls(iteration / max(total_iters, 1), iteration, iters_per_epoch, total_iters)

    @property
    def epoch(self) -> float | None:
        """Epochs done (fractional), or None when the iteration is unknown."""
        if self.iteration is None or not self.iters_per_epoch:
            return None
        return self.iteration / self.iters_per_epoch

    def __repr__(self) -> str:
        return (f"TrainingProgress({float(self)!r}, iteration={self.iteration}, "
                f"iters_per_epoch={self.iters_per_epoch}, total_iters={self.total_iters})")


class DynamicLayer:
    """Mixin for converted layers: optional hooks the core calls.

    `set_progress(progress)` is called by the training loop after every step with a
    TrainingProgress (a float: the fraction of training done, plus `.iteration`, `.epoch`,
    `.iters_per_epoch`, `.total_iters`); `deploy_module()` returns the inference form. A layer whose
    schedule anneals something (e.g. a softmax temperature) describes it in `schedule_description()` and
    reports its current value in `schedule_value()`; training records both with each result.
    `conv_macs(out_size)` tells the MAC counter which of the layer's MACs are convolution (see there).
    """

    def set_progress(self, fraction: float) -> None:  # pragma: no cover - default no-op
        pass

    def schedule_description(self) -> str | None:
        """What this layer anneals over training, e.g. '30 -> 1 over 10 epochs' (None: nothing anneals)."""
        return None

    def schedule_value(self) -> float | None:
        """The current value of this layer's scheduled quantity (None: it has none)."""
        return None

    def conv_macs(self, out_size: tuple[int, ...]) -> int | None:
        """MACs per image of this layer's convolution for one call whose output has spatial size `out_size`.

        `dynconv_bench.profile` counts every op inside the layer; this part is reported as conv MACs and the
        rest (attention, kernel aggregation, scaling, fusion) as dynamic overhead. None, the default, means one
        conv with the layer's geometry: out_channels * in_channels / groups * kernel area * output positions.
        A multi-branch layer (e.g. Selective Kernel's 3x3 and dilated 3x3 branches) returns the sum of its
        branches' convs; the counter refuses a value above what it counted inside the layer.
        """
        return None

    def deploy_module(self) -> nn.Module:
        return self  # type: ignore[return-value]
