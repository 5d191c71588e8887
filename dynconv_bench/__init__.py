"""dynconv-bench: dynamic convolutions (variants, all plugins) and static baselines behind one interface."""

from __future__ import annotations

from .errors import ConfigError, UserError
from .models.convert import ConversionReport, convert, create_model, deploy, set_progress
from .models.registry import get_variant, list_variants, load_plugin_file, register_variant
from .models.sites import ConvSite, find_conv_sites
from .models.variant import DynamicLayer, Param, StageContext, TrainingProgress, Variant

__version__ = "0.1.0"


def profile(model, input_size=(3, 224, 224), **kwargs):  # noqa: ANN001, ANN201
    """Parameters and complete MAC counts of `model` (see dynconv_bench.metrics.flops.profile)."""
    from .metrics.flops import profile as _profile

    return _profile(model, input_size=input_size, **kwargs)


__all__ = [
    "ConfigError", "ConversionReport", "ConvSite", "DynamicLayer", "Param", "StageContext", "UserError",
    "Variant", "convert", "create_model", "deploy", "find_conv_sites", "get_variant", "list_variants",
    "load_plugin_file", "profile", "register_variant", "set_progress", "TrainingProgress",
]

