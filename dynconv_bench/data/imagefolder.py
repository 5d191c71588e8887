"""ImageNet-style class folders at a local path: root/train/<class>/* and root/val/<class>/*."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "imagefolder expects root/train/<class>/*.jpg|png and root/val/<class>/*.jpg|png (same class folders)"
SPLIT_DIR = {"train": "train", "test": "val", "val": "val"}


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
