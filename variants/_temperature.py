"""The annealed temperature of DyConv, ODConv (30 -> 1) and KernelWarehouse (1 -> 0), counted as the papers count it.

The official releases step the temperature every iteration from 30 down to 1 over the first 10
*epochs*, then keep it at 1 (KernelWarehouse: its mixing weight from 1 to 0 over the first 20 of 300). A schedule here is counted in epochs (the papers' unit) or as a
fraction of the run, and never anneals over fewer than `min_iters` optimiser steps: a short run
must not collapse 30 -> 1 within a handful of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynconv_bench import DynamicLayer, Param

UNITS = ("epoch", "fraction")
# Anneal over at least this many optimiser steps. ODConv (and its official layer) trains badly when the
# temperature reaches 1 within a few dozen steps of a fresh network: see docs/investigations.md.
DEFAULT_MIN_ITERS = 200


def temperature_params(what: str, start: float = 30.0, end: float = 1.0, epochs: float = 10.0,
                       start_param: Param | None = None) -> dict[str, Param]:
    """Config keys of the annealed temperature (DyConv/ODConv papers: 30 -> 1 over the first 10 epochs)."""
    return {
        "temperature": start_param or Param(start, f"initial temperature of {what}", min=1e-6),
        "anneal_unit": Param("epoch", "what anneal length counts: 'epoch' (anneal_epochs, as the papers) or "
                                      "'fraction' (anneal_fraction of the run)", choices=UNITS),
        "anneal_epochs": Param(epochs, f"epochs over which the temperature goes linearly to {end:g} "
                                       "(anneal_unit=epoch; 0 keeps it constant)", type=float, min=0.0),
        "anneal_fraction": Param(0.1, f"fraction of training over which the temperature goes linearly to {end:g} "
                                      "(anneal_unit=fraction; 0 keeps it constant)", type=float, min=0.0, max=1.0),
        "anneal_min_iters": Param(DEFAULT_MIN_ITERS, "the anneal lasts at least this many optimiser steps",
                                  min=0),
    }


@dataclass(frozen=True)
class TemperatureSchedule:
    """`start` -> `end` linearly over `epochs` epochs or `fraction` of the run (by `unit`), at least `min_iters` steps.

    A length of 0 keeps `start` constant; so does start = end.
    """

    start: float = 30.0
    unit: str = "epoch"
    epochs: float = 10.0
    fraction: float = 0.1
    min_iters: int = DEFAULT_MIN_ITERS
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"anneal unit must be one of {', '.join(UNITS)}, got {self.unit!r}")

    @classmethod
    def constant(cls, temperature: float) -> TemperatureSchedule:
        return cls(float(temperature), "fraction", 0.0, 0.0, 0, float(temperature))

    @classmethod
    def from_config(cls, cfg: dict[str, Any], end: float = 1.0) -> TemperatureSchedule:
        """The schedule described by a variant config holding the keys of `temperature_params`."""
        return cls(float(cfg["temperature"]), cfg["anneal_unit"], float(cfg["anneal_epochs"]),
                   float(cfg["anneal_fraction"]), int(cfg["anneal_min_iters"]), float(end))

    @property
    def anneals(self) -> bool:
        length = self.epochs if self.unit == "epoch" else self.fraction
        return self.start != self.end and length > 0

    def anneal_iters(self, iters_per_epoch: int | None, total_iters: int | None) -> float | None:
        """Length of the anneal in optimiser steps for a run of this shape (None when it cannot be known)."""
        per = iters_per_epoch if self.unit == "epoch" else total_iters
        if not self.anneals or not per:
            return None
        length = self.epochs * per if self.unit == "epoch" else self.fraction * per
        return max(length, float(self.min_iters))

    def at(self, progress: float) -> float:
        """The temperature at `progress`: a TrainingProgress (iteration known) or a bare fraction of the run.

        A bare fraction only serves unit 'fraction' (without the floor, which needs the iteration).
        """
        if not self.anneals:
            return float(self.start)
        iteration = getattr(progress, "iteration", None)
        length = self.anneal_iters(getattr(progress, "iters_per_epoch", None), getattr(progress, "total_iters", None))
        if iteration is not None and length is not None:
            done = iteration / length
        elif self.unit == "fraction":
            done = min(max(float(progress), 0.0), 1.0) / self.fraction
        else:
            raise ValueError("a temperature annealed over epochs needs the iteration and the epoch length: "
                             "call set_progress(model, fraction, iteration=..., iters_per_epoch=..., total_iters=...) "
                             "or use anneal_unit='fraction'")
        return self.end + (self.start - self.end) * max(0.0, 1.0 - done)

    def describe(self) -> str:
        """Short text, e.g. '30 -> 1 over 10 epochs (>= 200 iterations)'."""
        if not self.anneals:
            return f"constant {self.start:g}"
        span = f"{self.epochs:g} epochs" if self.unit == "epoch" else f"{self.fraction:g} of the run"
        floor = f" (>= {self.min_iters} iterations)" if self.min_iters else ""
        return f"{self.start:g} -> {self.end:g} over {span}{floor}"


class AnnealedLayer(DynamicLayer):
    """A converted layer annealing `temperature` by its `schedule`: tells the training records both."""

    schedule: TemperatureSchedule
    temperature: float

    def schedule_description(self) -> str | None:
        return self.schedule.describe() if self.schedule.anneals else None

    def schedule_value(self) -> float | None:
        return float(self.temperature)
