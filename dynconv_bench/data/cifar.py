"""CIFAR-10 / CIFAR-100 from a local directory in the standard python-pickle batch format (read by a restricted
unpickler: a batch file never runs code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import UserError
from ..untrusted import load_restricted_pickle

# The usual per-channel normalisation constants of the CIFAR training sets.
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
SUBDIR = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def layout(name: str) -> str:
    """One line describing the directory layout `name` expects."""
    files = FILES[name]["train"] + FILES[name]["test"]
    return (f"{name} expects a directory (or its subdirectory {SUBDIR[name]}/) holding the python-pickle "
            f"batches {', '.join(files)} with keys b'data' (N x 3072 uint8) and {LABEL_KEY[name]!r}")


def find_dir(name: str, root: str | Path | None) -> Path:
    """The directory holding the batch files, or a UserError naming the expected layout."""
    if root is None:
        raise UserError(f"{name} needs --data-root: {layout(name)}")
    root = Path(root).expanduser()
    for cand in (root, root / SUBDIR[name]):
        if all((cand / f).is_file() for f in FILES[name]["train"] + FILES[name]["test"]):
            return cand
    if not root.is_dir():
        raise UserError(f"{name} data path {str(root)!r} does not exist; {layout(name)}")
    raise UserError(f"{name} data path {str(root)!r} is missing batch files; {layout(name)}")


def load_batches(name: str, root: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one split."""
    folder = find_dir(name, root)
    images, labels = [], []
    for fname in FILES[name][split]:
        path = folder / fname
        batch = load_restricted_pickle(path, f"{name} batch")  # admits dicts, lists, bytes, numbers, arrays only
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = np.asarray(batch[LABEL_KEY[name]], dtype=np.int64)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise UserError(f"{name} batch {str(path)!r} is malformed ({type(exc).__name__}: {exc}); "
                            f"{layout(name)}") from None
        if len(lab) != len(data):
            raise UserError(f"{name} batch {str(path)!r} has {len(data)} images but {len(lab)} labels")
        if len(lab) and (lab.min() < 0 or lab.max() >= NUM_CLASSES[name]):
            raise UserError(f"{name} batch {str(path)!r} has labels outside 0..{NUM_CLASSES[name] - 1}")
        images.append(data)
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


class CIFAR(Dataset):
    """A CIFAR split held in memory; train applies pad-4 random crop and horizontal flip."""

    def __init__(self, name: str, root: str | Path | None, split: str = "train", image_size: int = 32,
                 augment: bool | None = None) -> None:
        if name not in FILES:
            raise ValueError(f"unknown CIFAR name {name!r}")
        images, labels = load_batches(name, root, split)
        self.name, self.num_classes, self.image_size = name, NUM_CLASSES[name], int(image_size)
        self.augment = (split == "train") if augment is None else augment
        mean = torch.tensor(MEAN[name]).view(3, 1, 1)
        std = torch.tensor(STD[name]).view(3, 1, 1)
        self.images = (torch.from_numpy(images).float() / 255 - mean) / std
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        if self.augment:
            # torch's global RNG: the training loop seeds it per epoch, which keeps resumes exact.
            x = F.pad(x, (4, 4, 4, 4))
            i, j = torch.randint(0, 9, (2,)).tolist()
            x = x[:, i:i + 32, j:j + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        if self.image_size != 32:
            x = F.interpolate(x.unsqueeze(0), size=(self.image_size,) * 2, mode="bilinear",
                              align_corners=False).squeeze(0)
        return x, int(self.labels[index])
