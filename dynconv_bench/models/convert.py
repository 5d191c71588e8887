"""Model conversion: build a backbone, replace its selected convs by a variant's layers, deploy."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import timm
from torch import nn

from ..errors import UserError
from .registry import get_variant, make_variant
from .sites import ConvSite, find_conv_sites, select_sites, validate_policy
from .variant import StageContext, TrainingProgress, Variant


@dataclass
class ConversionReport:
    """What `convert` did: the variant, its full config, and the layers it replaced."""

    variant: str
    config: dict[str, Any]
    converted: list[str] = field(default_factory=list)
    eligible: list[str] = field(default_factory=list)
    total_convs: int = 0
    reason: str | None = None  # why nothing was converted; None when something was, or by design (static)

    @property
    def nothing_converted(self) -> bool:
        """True when a variant meant to convert layers converted none (the model then equals its backbone)."""
        return self.reason is not None

    def summary(self) -> str:
        text = (f"{self.variant}: converted {len(self.converted)} of {self.total_convs} convs "
                f"({len(self.eligible)} selected by policy {self.config.get('policy', 'all')!r})")
        return text + (f"; no layer converted: {self.reason}" if self.reason else "")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def convert(model: nn.Module, variant: str | Variant = "static", **cfg: Any) -> nn.Module:
    """Replace the convs of `model` chosen by the variant's policy, in place; return the model.

    The report of what was replaced is attached as `model.dynconv_report`.
    """
    var = make_variant(variant, **cfg)
    policy = var.policy()
    validate_policy(policy)
    sites = find_conv_sites(model)
    chosen = select_sites(sites, policy)
    by_stage: dict[str, list[ConvSite]] = {}
    for site in chosen:
        by_stage.setdefault(site.stage, []).append(site)
    stages = [StageContext(stage, stage_sites, model) for stage, stage_sites in by_stage.items()]
    replacements = var.convert_model(stages)
    for name, new in replacements.items():
        _set_submodule(model, name, new)
    var.finalize(model)
    order = {s.name: s.index for s in sites}
    converted = sorted(replacements, key=lambda n: order.get(n, -1))
    reason = None
    if not converted and var.converts_layers:
        reason = _why_nothing_converted(var, sites, chosen, stages)
    report = ConversionReport(var.name, dict(var.cfg), converted, [s.name for s in chosen], len(sites), reason)
    model.dynconv_report = report  # type: ignore[assignment]
    return model


def _why_nothing_converted(var: Variant, sites: list[ConvSite], chosen: list[ConvSite],
                           stages: list[StageContext]) -> str:
    if not sites:
        return "the model has no Conv2d layer"
    if not chosen:
        return f"policy {var.policy()!r} selects none of the model's {len(sites)} convs"
    return var.why_nothing_converted(stages)


def create_model(backbone: str, variant: str | Variant = "static", num_classes: int | None = 1000,
                 pretrained: bool = False, preset: str | None = None, **cfg: Any) -> nn.Module:
    """Build a timm backbone (or registered architecture) and convert it with `variant`.

    `num_classes=None` keeps the backbone's own default; `preset` (e.g. "paper") starts from the
    configuration the variant declares for this backbone, and explicit `cfg` keys override it.
    """
    from . import backbones
    from .registry import load_architectures

    load_architectures()
    backbones.check_backbone(backbone)
    if pretrained:
        raise UserError("pretrained weights are not available: this suite never downloads weights")
    if preset is not None:
        var_cls = type(variant) if isinstance(variant, Variant) else get_variant(variant)
        cfg = {**var_cls.preset_config(preset, backbone), **cfg}
    if num_classes is None:
        num_classes = backbones.default_num_classes(backbone)
    model = timm.create_model(backbone, pretrained=False, num_classes=num_classes)
    model = convert(model, variant, **cfg)
    model.dynconv_backbone = backbone  # type: ignore[assignment]
    return model


def deploy(model: nn.Module) -> nn.Module:
    """The inference form of `model`: a copy in eval mode with every static part folded.

    Layers that define `deploy_module()` are replaced by what it returns; for models with
    nothing to fold the copy computes exactly what the original does.
    """
    deployed = copy.deepcopy(model).eval()
    targets = [(n, m) for n, m in deployed.named_modules() if n and hasattr(m, "deploy_module")]
    replaced: set[str] = set()
    for name, module in targets:
        if any(name.startswith(p + ".") for p in replaced):
            continue  # inside a module already replaced
        new = module.deploy_module()
        if new is not module:
            _set_submodule(deployed, name, new)
            replaced.add(name)
    return deployed


def set_progress(model: nn.Module, fraction: float, iteration: int | None = None,
                 iters_per_epoch: int | None = None, total_iters: int | None = None) -> None:
    """Tell every converted layer how far training has progressed (0 = start, 1 = end).

    Layers get a TrainingProgress: the fraction (clamped to [0, 1]) that also carries the iteration
    and the run's length when given (a TrainingProgress passed in keeps its own), so that
    schedules counted in epochs or iterations can follow it.
    """
    if not isinstance(fraction, TrainingProgress) or iteration is not None:
        fraction = TrainingProgress(fraction, iteration, iters_per_epoch, total_iters)
    for module in model.modules():
        fn = getattr(module, "set_progress", None)
        if callable(fn) and module is not model:
            fn(fraction)
