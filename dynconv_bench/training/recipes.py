"""Named training recipes: quick CPU recipes here, the papers' ImageNet schedules from the variants that declare them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, did_you_mean, unknown_choice


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and regularisation of one training run (batch_size is global)."""

    name: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" or "step"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1  # warm-up starts at lr * this and rises linearly to lr
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()  # step schedule: epochs at which lr is multiplied by gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    amp: bool = False  # bfloat16 autocast on CPU, float16 autocast with loss scaling on CUDA
    grad_clip: float | None = None  # max gradient norm; None disables clipping
    image_size: int | None = None  # None: the dataset's default resolution
    eval_batch_size: int = 256
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    workers: int = 0
    # "Precise BN": before each evaluation, recompute BatchNorm statistics as a plain average over this
    # many training batches (0 = keep the running averages). Short runs of dynamic convs otherwise
    # evaluate with statistics that lag their fast-moving attention scales.
    bn_recalibration_batches: int = 0
    divergence_factor: float = 20.0  # a loss above this times ln(num_classes) counts as diverged
    dataset: str | None = None  # the dataset the recipe was made for (informational)
    source: str = ""
    notes: str = field(default="", compare=False)

    def lr_at(self, iteration: int, iters_per_epoch: int) -> float:
        """The learning rate for 0-based `iteration` (per-iteration warm-up, then cosine or step)."""
        epoch = iteration / max(iters_per_epoch, 1)
        warm = self.warmup_epochs
        if warm > 0 and epoch < warm:
            f = self.warmup_start_factor
            return self.lr * (f + (1 - f) * epoch / warm)
        if self.schedule == "step":
            drops = sum(1 for m in self.milestones if epoch >= m)
            return self.lr * self.gamma ** drops
        span = max(self.epochs - warm, 1e-12)
        t = min(max((epoch - warm) / span, 0.0), 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with `overrides` applied; unknown keys and bad values raise ConfigError."""
        valid = [f.name for f in dataclasses.fields(self) if f.name != "name"]
        out: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in valid:
                raise ConfigError(f"recipe {self.name}: unknown key {key!r}{did_you_mean(key, valid)}; "
                                  f"valid keys: {', '.join(sorted(valid))}")
            if key == "milestones" and isinstance(value, list):
                value = tuple(value)
            out[key] = value
        new = dataclasses.replace(self, **out)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise ConfigError for values that cannot train."""
        numbers = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), float)}
        for key, value in numbers.items():
            if not math.isfinite(value):
                raise ConfigError(f"recipe {self.name}: {key} must be a finite number, not {value!r}")
        checks = [
            (isinstance(self.epochs, int) and 1 <= self.epochs <= 10_000, "epochs must be an integer in [1, 10000]"),
            (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 65_536,
             "batch_size must be an integer in [1, 65536]"),
            (isinstance(self.eval_batch_size, int) and 1 <= self.eval_batch_size <= 65_536,
             "eval_batch_size must be an integer in [1, 65536]"),
            (self.image_size is None or (isinstance(self.image_size, int) and 1 <= self.image_size <= 4096),
             "image_size must be an integer in [1, 4096]"),
            (isinstance(self.workers, int) and 0 <= self.workers <= 256, "workers must be an integer in [0, 256]"),
            (isinstance(self.lr, (int, float)) and self.lr > 0, "lr must be > 0"),
            (self.schedule in ("cosine", "step"), "schedule must be one of: cosine, step"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or None"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (isinstance(self.eval_every, int) and self.eval_every >= 1, "eval_every must be an integer >= 1"),
            (self.divergence_factor > 1, "divergence_factor must be > 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"recipe {self.name}: {msg}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


_OWN: dict[str, Recipe] = {r.name: r for r in [
    # Quick CPU recipes: a few epochs of a small CIFAR-style ResNet at 32x32.
    # digits: the scans' own 8x8 resolution (what the suites use; 1/16 of the cost of 32x32)
    Recipe("digits-quick", epochs=6, batch_size=64, lr=0.1, weight_decay=5e-4, warmup_epochs=1.0,
           bn_recalibration_batches=20, image_size=8, dataset="digits", source="this project (quick CPU comparison)"),
    Recipe("synthetic-quick", epochs=6, batch_size=64, lr=0.1, weight_decay=5e-4, warmup_epochs=1.0,
           bn_recalibration_batches=20, dataset="synthetic", source="this project (quick CPU comparison)"),
    Recipe("cifar-resnet", epochs=160, batch_size=128, lr=0.1, weight_decay=1e-4, schedule="step",
           milestones=(80, 120), dataset="cifar10", source="He et al. 2016, CIFAR-10 ResNet schedule"),
]}


class _Recipes(Mapping[str, Recipe]):
    """The recipes above and those each registered variant declares in `Variant.recipes` (its papers' recipes)."""

    def _all(self) -> dict[str, Recipe]:
        from ..models.registry import get_variant, list_variants

        out = dict(_OWN)
        for variant in list_variants():
            for name, fields in get_variant(variant).recipes.items():
                if name in out:
                    raise ConfigError(f"variant {variant} declares recipe {name!r}, which another recipe already has")
                try:
                    out[name] = Recipe(name, **fields)
                except TypeError as exc:
                    raise ConfigError(f"variant {variant}: recipe {name!r}: {exc}") from None
        return out

    def __getitem__(self, name: str) -> Recipe:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


RECIPES: Mapping[str, Recipe] = _Recipes()


def get_recipe(recipe: str | Recipe, **overrides: Any) -> Recipe:
    """A named (or given) recipe with `overrides` applied."""
    if isinstance(recipe, str):
        recipes = dict(RECIPES)
        if recipe not in recipes:
            raise unknown_choice("recipe", recipe, recipes)
        recipe = recipes[recipe]
    return recipe.replace(**overrides) if overrides else recipe


def default_recipe(dataset: str) -> str:
    """The quick recipe for a dataset, or a ConfigError naming the recipes to choose from."""
    name = {"digits": "digits-quick", "synthetic": "synthetic-quick", "cifar10": "cifar-resnet",
            "cifar100": "cifar-resnet"}.get(dataset)
    if name is None:
        raise ConfigError(f"dataset {dataset!r} has no default recipe; choose --recipe from: {', '.join(RECIPES)}")
    return name
