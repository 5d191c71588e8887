"""Measurements: parameters, complete MAC counts, speed, peak memory and the environment.

The names below load on first use, so `metrics.env` (read by the reports) imports without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

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
__all__ = [
    "Profile", "SpeedResult", "collect_environment", "count_deployed_params", "count_params",
    "measure_inference", "measure_paired", "measure_train_step", "peak_memory", "profile",
]
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
