"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

import dynconv_bench
from dynconv_bench.backbones import STANDARD_BACKBONES


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def variant_names() -> list[str]:
    return dynconv_bench.list_variants()


def small_input_size(backbone: str) -> tuple[int, int, int]:
    """A small input that every listed backbone accepts (keeps CPU tests fast)."""
    return (3, 32, 32) if backbone.startswith("cifar_") else (3, 64, 64)


__all__ = ["STANDARD_BACKBONES", "small_input_size"]
