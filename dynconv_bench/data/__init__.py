"""Offline datasets: synthetic, digits, cifar10, cifar100, imagefolder (never downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..errors import UserError, unknown_choice

DATASETS = ("synthetic", "digits", "cifar10", "cifar100", "imagefolder")
SPLITS = ("train", "test")
_KWARGS = {
    "synthetic": ("num_samples", "num_classes", "noise"),
    "digits": (),
    "cifar10": ("augment",),
    "cifar100": ("augment",),
    "imagefolder": (),
}


def _check(name: str, split: str, kw: dict[str, Any]) -> None:
    if name not in DATASETS:
        raise unknown_choice("dataset", name, DATASETS)
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    bad = sorted(set(kw) - set(_KWARGS[name]))
    if bad:
        raise UserError(f"dataset {name}: unknown option {bad[0]!r}; valid: {', '.join(_KWARGS[name]) or '(none)'}")


def dataset_info(name: str, root: str | Path | None = None, **kw: Any) -> dict[str, Any]:
    """num_classes, default image_size (H = W) and channels of a dataset, without loading it."""
    _check(name, "train", kw)
    if name == "synthetic":
        return {"num_classes": int(kw.get("num_classes", 10)), "image_size": 32, "channels": 3}
    if name == "digits":
        return {"num_classes": 10, "image_size": 32, "channels": 3}
    if name in ("cifar10", "cifar100"):
        return {"num_classes": 10 if name == "cifar10" else 100, "image_size": 32, "channels": 3}
    from .imagefolder import class_names

    return {"num_classes": len(class_names(root, "train")), "image_size": 224, "channels": 3}


def get_dataset(name: str, split: str = "train", root: str | Path | None = None, image_size: int | None = None,
                seed: int = 0, **kw: Any) -> Dataset:
    """One split of a dataset; items are (float image tensor (3, H, W), int label).

    `seed` selects the synthetic dataset (the others are fixed data); `kw` are per-dataset options.
    """
    _check(name, split, kw)
    size = int(image_size or dataset_info(name, root, **kw)["image_size"])
    if name == "synthetic":
        from .synthetic import SyntheticShapes

        return SyntheticShapes(split, image_size=size, seed=seed, **kw)
    if name == "digits":
        from .digits import Digits

        return Digits(split, image_size=size)
    if name in ("cifar10", "cifar100"):
        from .cifar import CIFAR

        return CIFAR(name, root, split, image_size=size, **kw)
    from .imagefolder import image_folder

    return image_folder(root, split, image_size=size)


def num_classes_of(dataset: Dataset) -> int:
    """The class count of a dataset built here (or any dataset with `num_classes` or `classes`)."""
    n = getattr(dataset, "num_classes", None)
    if n is None and getattr(dataset, "classes", None) is not None:
        n = len(dataset.classes)  # type: ignore[attr-defined]
    if n is None:
        raise UserError("dataset has neither num_classes nor classes; set one of them")
    return int(n)


__all__ = ["DATASETS", "dataset_info", "get_dataset", "num_classes_of"]


def training_subset(name: str, size: int, seed: int, root: str | Path | None = None,
                    image_size: int | None = None) -> tuple[Dataset, Dataset]:
    """(`size` training items drawn with `seed`, the full test split) of a dataset: quick accuracy runs."""
    import torch
    from torch.utils.data import Subset

    train = get_dataset(name, "train", root, image_size=image_size)  # the same data as the full-split path
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    subset = Subset(train, order[:size])
    subset.num_classes = num_classes_of(train)  # type: ignore[attr-defined]
    subset.name = name  # type: ignore[attr-defined]
    return subset, get_dataset(name, "test", root, image_size=image_size)
