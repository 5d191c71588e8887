"""scikit-learn's bundled handwritten digits (1797 real 8x8 images), upsampled to RGB 32x32."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0  # the split is fixed: every seed and every run sees the same train/test images


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed stratified split of the raw digits: images (N, 8, 8) in [0, 1] and labels (N,)."""
    images, labels = _load_split(split)
    return images.clone(), labels.clone()


@functools.lru_cache(maxsize=2)
def _load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(torch.arange(len(labels)).numpy(), test_size=TEST_FRACTION,
                                           stratify=labels.numpy(), random_state=SPLIT_SEED)
    idx = torch.as_tensor(idx_train if split == "train" else idx_test)
    return images[idx], labels[idx]


class Digits(Dataset):
    """Digits as 3-channel images of `image_size`, normalised with the train split's mean and std."""

    num_classes = 10

    def __init__(self, split: str = "train", image_size: int = 32) -> None:
        raw, self.labels = load_split(split)
        train_raw, _ = load_split("train") if split != "train" else (raw, None)
        mean, std = train_raw.mean(), train_raw.std()
        x = F.interpolate(raw.unsqueeze(1), size=(image_size, image_size), mode="bilinear", align_corners=False)
        self.images = ((x - mean) / std).expand(-1, 3, -1, -1).contiguous()
        self.classes = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
