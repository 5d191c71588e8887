"""Measurements: parameters, complete MAC counts, speed, peak memory and the environment."""

from __future__ import annotations

from .env import collect_environment
from .flops import Profile, profile
from .memory import peak_memory
from .params import count_deployed_params, count_params
from .speed import SpeedResult, measure_inference, measure_paired, measure_train_step

__all__ = [
    "Profile", "SpeedResult", "collect_environment", "count_deployed_params", "count_params",
    "measure_inference", "measure_paired", "measure_train_step", "peak_memory", "profile",
]
