"""Variant plugin (`dynconv_bench.variants`): every selected conv's output times a constant."""

from __future__ import annotations

import torch
from torch import nn

from dynconv_bench import Param, Variant


class ScaledConv(nn.Module):
    def __init__(self, conv: nn.Conv2d, scale: float) -> None:
        super().__init__()
        self.conv = conv
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


class Scaled(Variant):
    paper = "test plugin: conv outputs scaled"
    params = {"scale": Param(2.0, "output factor", min=0.0), "policy": Param("blocks", "which convs", type=str)}

    def convert_conv(self, site):  # noqa: ANN001, ANN201
        return ScaledConv(site.conv, self.cfg["scale"])
