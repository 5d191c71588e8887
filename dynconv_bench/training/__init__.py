"""Training and evaluation: recipes, the loop (checkpoint/resume, divergence stop) and DDP helpers."""

from __future__ import annotations

import os
from typing import Any

from .loop import ProgressFn, evaluate, topk_correct, train_and_evaluate
from .recipes import RECIPES, Recipe, default_recipe, get_recipe


def train_model(backbone: str, variant: str, dataset: str, recipe: str | Recipe | None = None, seed: int = 0,
                data_root: str | None = None, device: str = "cpu", epochs: int | None = None,
                checkpoint_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None,
                variant_cfg: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Seed, build `backbone` converted by `variant` for `dataset`'s classes, then train_and_evaluate it.

    The result also records backbone, variant, the variant's full config and the parameter count.
    """
    import torch

    from ..data import dataset_info
    from ..models.modelspec import ModelSpec

    rec = get_recipe(recipe or default_recipe(dataset), **overrides)
    info = dataset_info(dataset, data_root)
    torch.manual_seed(seed)  # model initialisation is part of what the seed fixes
    model = ModelSpec(backbone, variant, variant_cfg or {}).build(info["num_classes"], info.get("channels", 3))
    report = getattr(model, "dynconv_report", None)
    result = train_and_evaluate(model, dataset, rec, seed=seed, data_root=data_root, device=device, epochs=epochs,
                                checkpoint_dir=checkpoint_dir, progress=progress)
    result.update(backbone=backbone, variant=variant, config=dict(report.config) if report else dict(variant_cfg or {}),
                  params=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))
    return result


def aggregate_seeds(results: list[dict[str, Any]], keys: tuple[str, ...] = ("top1", "top5", "loss")) -> dict[str, Any]:
    """Mean and sample std (n - 1) over the successful runs of `results`; failures are counted, not averaged."""
    import statistics

    ok = [r for r in results if r.get("status") == "ok"]
    out: dict[str, Any] = {"runs": len(results), "ok": len(ok), "failed": len(results) - len(ok),
                           "seeds": [r.get("seed") for r in ok]}
    for key in keys:
        vals = [float(r[key]) for r in ok if r.get(key) is not None]
        out[f"{key}_mean"] = statistics.fmean(vals) if vals else None
        out[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
    return out


__all__ = ["RECIPES", "Recipe", "aggregate_seeds", "default_recipe", "evaluate", "get_recipe", "topk_correct",
           "train_and_evaluate", "train_model"]
