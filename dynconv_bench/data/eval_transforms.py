"""Evaluation data for published models: a release's own eval transform over imagefolder's val/ split.

Labels: when every class folder is an ImageNet synset (n01440764, ...) and the model has 1000 outputs, a
folder's label is its synset's index among the 1000 (so a subset of the classes is scored correctly);
otherwise folders are numbered in sorted order, as torchvision's ImageFolder does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..errors import UserError
from .imagefolder import LAYOUT

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def eval_transform(spec: Any) -> Any:
    """torchvision transform of an EvalTransform-like spec: Resize(short side) -> CenterCrop -> tensor -> normalise."""
    from torchvision import transforms as T

    if spec.interpolation not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation {spec.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    mode = getattr(T.InterpolationMode, spec.interpolation.upper())
    return T.Compose([T.Resize(spec.resize, interpolation=mode), T.CenterCrop(spec.crop), T.ToTensor(),
                      T.Normalize(spec.mean, spec.std)])


def _imagenet_synsets() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def eval_folder(root: str | Path | None, spec: Any, num_classes: int) -> Dataset:
    """root/val/<class>/* with the release's eval transform, labelled for a model of `num_classes` outputs."""
    from torchvision.datasets import ImageFolder

    if root is None:
        raise UserError(f"evaluating a checkpoint needs data_root: {LAYOUT}")
    folder = Path(root).expanduser() / "val"
    if not folder.is_dir():
        raise UserError(f"imagefolder data path {str(root)!r} has no val/ folder; {LAYOUT}")
    try:
        ds = ImageFolder(str(folder), transform=eval_transform(spec))
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"imagefolder {str(folder)!r}: {exc}; {LAYOUT}") from None
    synsets = _imagenet_synsets() if num_classes == 1000 else []
    if synsets and all(c in synsets for c in ds.classes):
        index = {s: i for i, s in enumerate(synsets)}
        remap = [index[c] for c in ds.classes]
        ds.target_transform = remap.__getitem__
        ds.labels = "imagenet synsets"  # type: ignore[attr-defined]
    elif len(ds.classes) > num_classes:
        raise UserError(f"{folder} has {len(ds.classes)} class folders but the model has {num_classes} outputs")
    else:
        ds.labels = "folder order"  # type: ignore[attr-defined]
    ds.num_classes = num_classes  # type: ignore[attr-defined]
    return ds
