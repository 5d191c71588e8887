"""ImageNet-style class folders at a local path: root/train/<class>/* and root/val/<class>/*."""

from __future__ import annotations

import re
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "imagefolder expects root/train/<class>/*.jpg|png and root/val/<class>/*.jpg|png (same class folders)"
SPLIT_DIR = {"train": "train", "test": "val", "val": "val"}
SYNSET_ID = re.compile(r"n\d{8}")  # the shape of an ImageNet (WordNet) synset id, e.g. n01440764


def class_names(root: str | Path | None, split: str = "train") -> list[str]:
    """The class folder names of one split, checked against the expected layout."""
    if root is None:
        raise UserError(f"imagefolder needs --data-root: {LAYOUT}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"imagefolder data path {str(base)!r} does not exist; {LAYOUT}")
    folder = base / SPLIT_DIR[split]
    if not folder.is_dir():
        raise UserError(f"imagefolder data path {str(base)!r} has no {SPLIT_DIR[split]}/ folder; {LAYOUT}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"imagefolder {str(folder)!r} has no class folders; {LAYOUT}")
    return classes


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k synset ids in class-index order (timm's table)."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def require_imagenet_synsets(root: str | Path | None, split: str = "val") -> list[str]:
    """The class folders of one split, each an ImageNet-1k synset id; otherwise one-line UserError naming the first
    that are not. A 1000-class checkpoint's label i is ImageNet's class i: scored on folders numbered in sorted
    order (`cat`, `dog` as 0, 1) its top-1 compares unrelated classes and means nothing."""
    classes = class_names(root, split)
    known = set(imagenet_synsets())
    bad = [c for c in classes if c not in known]
    if bad:
        shown = ", ".join(c if c.isprintable() else repr(c) for c in bad[:5])
        more = f", ... ({len(bad)} of {len(classes)})" if len(bad) > 5 else ""
        folder = Path(root).expanduser() / SPLIT_DIR[split]  # type: ignore[arg-type]
        raise UserError(f"{folder}: class folders are not ImageNet synset ids (nXXXXXXXX): {shown}{more}; a "
                        "1000-class checkpoint's top-1 on them means nothing")
    return classes


def build_transform(split: str, image_size: int, crop_fraction: float = 0.875):  # noqa: ANN201
    """RandomResizedCrop + flip for train; Resize + CenterCrop for evaluation."""
    from torchvision import transforms as T

    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if split == "train":
        return T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *norm])
    return T.Compose([T.Resize(int(round(image_size / crop_fraction))), T.CenterCrop(image_size), *norm])


def image_folder(root: str | Path | None, split: str = "train", image_size: int = 224) -> Dataset:
    """A torchvision ImageFolder over one split with the usual transforms."""
    from torchvision.datasets import ImageFolder

    classes = class_names(root, split)
    train_classes = class_names(root, "train") if split != "train" else classes
    if classes != train_classes:
        missing = sorted(set(train_classes) ^ set(classes))
        raise UserError(f"imagefolder train/ and val/ class folders differ ({', '.join(missing[:5])}); {LAYOUT}")
    folder = Path(root).expanduser() / SPLIT_DIR[split]  # type: ignore[arg-type]
    try:
        ds = ImageFolder(str(folder), transform=build_transform(split, image_size))
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"imagefolder {str(folder)!r}: {exc}; {LAYOUT}") from None
    ds.num_classes = len(ds.classes)  # type: ignore[attr-defined]
    return ds
