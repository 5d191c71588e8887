"""Measurements: parameters, complete MAC counts, speed, peak memory and the environment.

The names below load on first use, so `metrics.env` (read by the reports) imports without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

if TYPE_CHECKING:
    from .env import collect_environment
    from .flops import Profile, profile
    from .paired_timing import measure_paired
    from .param_count import count_deployed_params, count_params
    from .step_memory import peak_memory
    from .timing import measure_inference, measure_train_step
    from .timing_result import SpeedResult

_LAZY = {
    "env": ("collect_environment",),
    "flops": ("Profile", "profile"),
    "paired_timing": ("measure_paired",),
    "param_count": ("count_deployed_params", "count_params"),
    "step_memory": ("peak_memory",),
    "timing": ("measure_inference", "measure_train_step"),
    "timing_result": ("SpeedResult",),
}
__all__ = [
    "Profile", "SpeedResult", "collect_environment", "count_deployed_params", "count_params",
    "measure_inference", "measure_paired", "measure_train_step", "peak_memory", "profile",
]
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
