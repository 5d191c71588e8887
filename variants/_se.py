"""KernelDNA's SE-style channel attention, and a conv behind it (the `static-se` baseline; deployed children)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import DynamicLayer
from dynconv_bench.models.layers import ConvGeometry, ConvSpec, batchnorm_any_batch, scaled_input_conv
from dynconv_bench.models.triton_conv import prefers_fused

__all__ = ["ChannelSE", "SEConv"]


class ChannelSE(nn.Module):
    """SE-style channel attention as KernelDNA uses it: returns the per-sample channel scales.

    GAP -> 1x1 conv (C -> C/reduction, no bias) -> BN -> ReLU -> 1x1 conv (with bias) -> sigmoid.
    """

    conv_role = "attention"  # its convs are attention, never conversion sites (dynconv_bench.models.sites)

    def __init__(self, channels: int, reduction: int = 4, min_channels: int = 1) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_channels)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(batchnorm_any_batch(self.bn, self.reduce(s)))
        return torch.sigmoid(self.expand(s))


class SEConv(ConvGeometry, DynamicLayer, nn.Module):
    """A conv whose input channels are first scaled by a ChannelSE (the `static-se` baseline)."""

    def __init__(self, conv: nn.Conv2d, reduction: int = 4, min_channels: int = 1,
                 se: ChannelSE | None = None) -> None:
        super().__init__()
        self.se = se if se is not None else ChannelSE(conv.in_channels, reduction, min_channels)
        self.conv = conv
        self.geometry = ConvSpec.from_conv(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.se(x)
        if prefers_fused(x):
            return scaled_input_conv(self.geometry, x, scale, self.conv.weight, self.conv.bias)
        return self.conv(x * scale)
