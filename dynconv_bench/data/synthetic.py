"""A procedural image-classification dataset: textured shapes under nuisance variation.

A class is a (shape, texture orientation, texture period) combination; position, scale, rotation
of the shape, texture phase, colours, background gratings and pixel noise vary per image. Telling
classes apart needs local texture and shape, which input-dependent kernels can adapt to.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond")
ORIENTATIONS = (0.0, 45.0, 90.0, 135.0)
PERIODS = (4.0, 6.5, 9.0)
DEFAULT_SIZES = {"train": 1536, "test": 768}


def class_attributes(label: int) -> tuple[str, float, float]:
    """The (shape, texture orientation in degrees, texture period in pixels at 32x32) of a class."""
    shape = SHAPES[label % len(SHAPES)]
    rest = label // len(SHAPES)
    orientation = ORIENTATIONS[rest % len(ORIENTATIONS)]
    rest //= len(ORIENTATIONS)
    # Beyond the listed periods, keep growing the period so every class stays distinct.
    period = PERIODS[rest] if rest < len(PERIODS) else PERIODS[-1] + 2.5 * (rest - len(PERIODS) + 1)
    return shape, orientation, period


def _shape_mask(shape_ids: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r = torch.sqrt(u * u + v * v)
    masks = {
        "disk": r <= 1.0,
        "square": torch.maximum(u.abs(), v.abs()) <= 0.85,
        "triangle": (v >= -0.75) & (v <= 0.85) & (u.abs() <= 0.55 * (v + 0.75)),
        "cross": ((u.abs() <= 0.33) & (v.abs() <= 1.0)) | ((v.abs() <= 0.33) & (u.abs() <= 1.0)),
        "ring": (r >= 0.55) & (r <= 1.0),
        "diamond": u.abs() + v.abs() <= 1.1,
    }
    out = torch.zeros_like(u, dtype=torch.bool)
    for i, name in enumerate(SHAPES):
        sel = (shape_ids == i).view(-1, 1, 1)
        out |= sel & masks[name]
    return out


def generate(num_samples: int, num_classes: int = 10, image_size: int = 32, seed: int = 0,
             noise: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, S, S) in roughly [-1.5, 1.5] and balanced labels (N,), deterministic from `seed`."""
    if num_classes < 2:
        raise ValueError(f"synthetic needs at least 2 classes, got {num_classes}")
    g = torch.Generator().manual_seed(int(seed))
    n, s = int(num_samples), int(image_size)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    attrs = [class_attributes(c) for c in range(num_classes)]
    shape_ids = torch.tensor([SHAPES.index(a[0]) for a in attrs])[labels]
    theta = torch.tensor([a[1] for a in attrs])[labels] * math.pi / 180
    period = torch.tensor([a[2] for a in attrs])[labels] * s / 32

    def rand(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    scale = rand(0.28, 0.42) * s  # shape radius in pixels
    cx = rand(0, 1) * (s - 2 * scale) + scale
    cy = rand(0, 1) * (s - 2 * scale) + scale
    rot = rand(-0.35, 0.35)  # below 45 degrees: a rotated square never becomes a diamond
    theta = theta + rand(-0.12, 0.12)  # orientation jitter well below the 45 degree class spacing
    period = period * rand(0.88, 1.12)
    phase = rand(0, 2 * math.pi)

    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                            indexing="ij")
    dx = xs.unsqueeze(0) - cx.view(-1, 1, 1)
    dy = ys.unsqueeze(0) - cy.view(-1, 1, 1)
    cr, sr = torch.cos(rot).view(-1, 1, 1), torch.sin(rot).view(-1, 1, 1)
    u = (cr * dx + sr * dy) / scale.view(-1, 1, 1)
    v = (-sr * dx + cr * dy) / scale.view(-1, 1, 1)
    mask = _shape_mask(shape_ids, u, v).float()

    proj = xs.unsqueeze(0) * torch.cos(theta).view(-1, 1, 1) + ys.unsqueeze(0) * torch.sin(theta).view(-1, 1, 1)
    texture = torch.sin(2 * math.pi * proj / period.view(-1, 1, 1) + phase.view(-1, 1, 1))
    # Background: a weak grating of random orientation and period, so texture alone is not enough.
    b_theta, b_period, b_phase = rand(0, math.pi), rand(3.0, 10.0) * s / 32, rand(0, 2 * math.pi)
    b_proj = xs.unsqueeze(0) * torch.cos(b_theta).view(-1, 1, 1) + ys.unsqueeze(0) * torch.sin(b_theta).view(-1, 1, 1)
    background = torch.sin(2 * math.pi * b_proj / b_period.view(-1, 1, 1) + b_phase.view(-1, 1, 1))

    fg = rand(0.2, 1.0, (n, 3, 1, 1))
    bg = rand(0.0, 0.8, (n, 3, 1, 1))
    contrast = rand(0.4, 0.7, (n, 1, 1, 1))
    bg_contrast = rand(0.0, 0.2, (n, 1, 1, 1))
    m = mask.unsqueeze(1)
    img = m * fg * (1 + contrast * texture.unsqueeze(1)) + (1 - m) * bg * (1 + bg_contrast * background.unsqueeze(1))
    img = img + noise * torch.randn((n, 3, s, s), generator=g)
    img = (img - 0.5) / 0.35
    return img.contiguous(), labels


class SyntheticShapes(Dataset):
    """In-memory procedural dataset; train and test come from disjoint random streams of one seed."""

    def __init__(self, split: str = "train", num_samples: int | None = None, num_classes: int = 10,
                 image_size: int = 32, seed: int = 0, noise: float = 0.15) -> None:
        n = DEFAULT_SIZES[split] if num_samples is None else int(num_samples)
        stream = 2 * int(seed) + (0 if split == "train" else 1)
        self.images, self.labels = generate(n, num_classes, image_size, seed=10_007 * stream + 17, noise=noise)
        self.num_classes = num_classes
        self.classes = [f"{a[0]}-{a[1]:g}deg-{a[2]:g}px" for a in map(class_attributes, range(num_classes))]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
