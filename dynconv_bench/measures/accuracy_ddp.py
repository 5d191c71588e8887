"""Accuracy cells trained by several DDP workers (`gpus = N`, `nodes = M`): torchrun on the local executor,
Ray Train's TorchTrainer on the ray executor (see dynconv_bench.training.distributed.launch).

Same semantics as one process: the recipe's `batch_size` is the global batch (each of the N workers takes
batch_size / N per step) and its `lr` belongs to that global batch, so neither changes with N.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..models.modelspec import ModelSpec
from .options import MeasureOptions


def measure_distributed(spec: ModelSpec, opts: MeasureOptions) -> dict[str, Any]:
    """Train one accuracy cell with `opts.gpus` DDP workers; rank 0's values plus launcher, nodes and gpus."""
    from ..training.distributed import launch
    from ..training.recipes import default_recipe, get_recipe

    workers, nodes = int(opts.gpus), int(opts.nodes or 1)
    recipe = get_recipe(opts.recipe or default_recipe(opts.dataset), **dict(opts.overrides or {}))
    if recipe.batch_size % workers:
        raise UserError(f"accuracy: batch_size {recipe.batch_size} of recipe {recipe.name} does not split over "
                        f"gpus = {workers} workers; the global batch must be a multiple of gpus")
    single = {**opts.as_dict(), "gpus": 1, "nodes": 1}
    out = launch(f"{__name__}:train_rank", {"spec": spec, "options": single}, workers, nodes, str(opts.device),
                 cpus_per_worker=opts.threads or 1)
    cuda = str(opts.device).startswith("cuda")
    return {**out, "gpus": int(out.get("world_size") or workers) if cuda else 0}


def train_rank(payload: dict[str, Any]) -> dict[str, Any]:
    """One DDP worker: join the process group, then train as a one-process cell does (DDP inside the loop)."""
    import torch

    from ..training import distributed as D
    from .base import get_kind

    accuracy = get_kind("accuracy")  # through the registry: the kind's module imports this one
    opts = accuracy.options(payload["options"])
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    D.init_distributed(str(opts.device))
    return accuracy.measure(payload["spec"], opts).to_values()
