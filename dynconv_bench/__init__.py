"""dynconv-bench: dynamic convolutions (variants, all plugins) and static baselines behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError, UserError
from .lazy import lazy_names

if TYPE_CHECKING:
    from .models.convert import ConversionReport, convert, create_model, deploy, set_progress
    from .models.published.imported import load_imported
    from .models.registry import get_variant, list_variants, load_plugin_file, register_variant
    from .models.sites import ConvSite, find_conv_sites
    from .models.variant import DynamicLayer, Param, StageContext, TrainingProgress, Variant

__version__ = "0.1.0"

# The public names that need torch and timm, imported on first use: `dynconv-bench --help` and the
# reporting verbs start without them.
_LAZY = {
    "models.convert": ("ConversionReport", "convert", "create_model", "deploy", "set_progress"),
    "models.published.imported": ("load_imported",),
    "models.registry": ("get_variant", "list_variants", "load_plugin_file", "register_variant"),
    "models.sites": ("ConvSite", "find_conv_sites"),
    "models.variant": ("DynamicLayer", "Param", "StageContext", "TrainingProgress", "Variant"),
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


def profile(model, input_size=(3, 224, 224), **kwargs):  # noqa: ANN001, ANN201
    """Parameters and complete MAC counts of `model` (see dynconv_bench.metrics.flops.profile)."""
    from .metrics.flops import profile as _profile

    return _profile(model, input_size=input_size, **kwargs)


__all__ = [
    "ConfigError", "ConversionReport", "ConvSite", "DynamicLayer", "Param", "StageContext", "UserError",
    "Variant", "convert", "create_model", "deploy", "find_conv_sites", "get_variant", "list_variants",
    "load_imported", "load_plugin_file", "profile", "register_variant", "set_progress", "TrainingProgress",
]
