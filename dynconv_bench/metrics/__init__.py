"""Measurements: parameters, complete MAC counts, speed, peak memory and the environment.

The names below load on first use, so `metrics.env` (read by the reports) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .env import collect_environment
    from .flops import Profile, profile
    from .memory import peak_memory
    from .params import count_deployed_params, count_params
    from .speed import SpeedResult, measure_inference, measure_paired, measure_train_step

_LAZY = {
    "env": ("collect_environment",),
    "flops": ("Profile", "profile"),
    "memory": ("peak_memory",),
    "params": ("count_deployed_params", "count_params"),
    "speed": ("SpeedResult", "measure_inference", "measure_paired", "measure_train_step"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "Profile", "SpeedResult", "collect_environment", "count_deployed_params", "count_params",
    "measure_inference", "measure_paired", "measure_train_step", "peak_memory", "profile",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
