"""The accuracy kind's published-weights mode: `checkpoint` + `release` + `epochs = 0` evaluate a release's
weights (imported by dynconv_bench.models.published) with the release's eval transform on imagefolder's val/."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError, unknown_choice
from ..models.config_param import Param
from ..models.modelspec import ModelSpec

CHECKPOINT = {
    "checkpoint": Param(None, "a published release's weights file (in weights_dir, or a path): evaluated with the "
                              "release's eval transform on imagefolder's val/ (needs epochs = 0)", type=str),
    "release": Param(None, "the release the checkpoint comes from (an installed release importer's name)",
                     type=str),
    "weights_dir": Param(None, "folder of downloaded release files (checkpoint names are relative to it)", type=str),
    "checkpoint_sha256": Param(None, "expected sha256 of the checkpoint file (checked before loading)", type=str),
    "checkpoint_size": Param(None, "expected size of the checkpoint file in bytes", type=int, min=1),
}


def is_checkpoint_table(table: Mapping[str, Any]) -> bool:
    return table.get("checkpoint") is not None or table.get("release") is not None


def check_checkpoint(table: dict[str, Any], where: str) -> None:
    """A checkpoint table: release known, epochs = 0, imagefolder; a missing file skips the table with one line."""
    from ..models.published import releases

    if table.get("checkpoint") is None or table.get("release") is None:
        raise UserError(f"{where}: a checkpoint needs its release and a release needs a checkpoint")
    if table["release"] not in releases():
        raise UserError(f"{where}.release: {unknown_choice('release', table['release'], releases())}")
    if table.get("epochs") != 0:
        raise UserError(f"{where}: a checkpoint is evaluated, not trained: set epochs = 0")
    if table["datasets"] != ["imagefolder"]:
        raise UserError(f"{where}.datasets: published weights are evaluated on imagefolder (its val/) only")
    path = checkpoint_path(table)
    if not path.is_file():
        sys.stderr.write(f"dynconv-bench: skipping {where} ({table['release']}, {', '.join(table['backbones'] or [])}"
                         f" {', '.join(table['variants'] or [])}): {path} not found "
                         "(see docs/published.md for where to download it)\n")
        table["datasets"] = []  # cells expand over datasets: none from this table; every other table still runs


def checkpoint_path(opts: Mapping[str, Any] | Any) -> Path:
    """The checkpoint file of a table or cell: `checkpoint` under `weights_dir` when one is given."""
    get = opts.get if isinstance(opts, Mapping) else (lambda k: getattr(opts, k, None))
    path = Path(get("checkpoint")).expanduser()
    folder = get("weights_dir")
    return Path(folder).expanduser() / path if folder and not path.is_absolute() else path


def evaluate_checkpoint(spec: ModelSpec, opts: Any) -> dict[str, Any]:
    """Top-1/top-5 of a release's weights imported into the cell's model, over imagefolder's whole val/ split."""
    import torch

    from ..data.eval_transforms import eval_folder
    from ..data.imagefolder import require_imagenet_synsets
    from ..models.published import check_file, classes_of, find_pair, import_state_dict, read_state_dict
    from ..training import evaluate

    config = {k: v for k, v in dict(spec.config).items() if k != "preset"}
    pair = find_pair(opts.release, spec.backbone, spec.variant, config)
    path = checkpoint_path(opts)
    digest = check_file(path, opts.checkpoint_sha256, opts.checkpoint_size)
    sd = read_state_dict(path)
    classes = classes_of(pair, sd)
    if classes == 1000:  # ImageNet's label order: folders that are not its synsets would be scored by sorted name
        require_imagenet_synsets(opts.data_root)
    model = import_state_dict(pair, sd, num_classes=classes).to(opts.device)
    data = eval_folder(opts.data_root, pair.transform, classes)
    start = time.perf_counter()
    out = evaluate(model, data, batch_size=64, device=opts.device, num_classes=classes)
    paper = pair.paper
    published = {"release": pair.release, "arch": pair.arch, "file": str(path), "sha256": digest,
                 "tensors": len(sd), "paper_top1": paper.top1 if paper else None,
                 "paper_source": paper.source if paper else None, "transform": dict(pair.transform.__dict__),
                 "labels": getattr(data, "labels", None)}
    return {"top1": out["top1"], "top5": out["top5"], "loss": out["loss"], "epochs": 0,
            "train_time_s": time.perf_counter() - start, "seed": opts.seed, "dataset": "imagefolder",
            "num_classes": classes, "test_size": out["count"], "device": str(opts.device),
            "threads": torch.get_num_threads(), "published": published}
