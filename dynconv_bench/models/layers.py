"""Small layers shared by several variants."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .conv_spec import ConvGeometry, ConvSpec
from .per_sample_conv import KernelMixture, per_sample_conv
from .triton_conv import prefers_fused
from .variant import DynamicLayer

__all__ = ["ChannelSE", "ConvGeometry", "ConvSpec", "SEConv", "batchnorm_any_batch", "recomputing_batchnorm",
           "scaled_input_conv"]


def batchnorm_any_batch(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm that also works on one value per channel in training (batch 1 after pooling).

    With a single value per channel the batch statistics are undefined, so the running
    statistics are used (as in eval mode) and left unchanged.
    """
    if bn.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


@contextlib.contextmanager
def recomputing_batchnorm(model: nn.Module) -> Iterator[int]:
    """Inside: every BatchNorm's running statistics start afresh and average the batches the model sees.

    Yields the number of BatchNorms (0: nothing is touched). The model runs in train mode inside; its
    mode and the BatchNorms' momenta are restored on exit.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        yield 0
        return
    was_training, momenta = model.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the plain mean over the batches seen
    model.train()
    try:
        yield len(norms)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


class ChannelSE(nn.Module):
    """SE-style channel attention as KernelDNA uses it: returns the per-sample channel scales.

    GAP -> 1x1 conv (C -> C/reduction, no bias) -> BN -> ReLU -> 1x1 conv (with bias) -> sigmoid.
    """

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


def scaled_input_conv(geometry: ConvSpec, x: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    """conv(x * scale) with per-sample input-channel scales (B, C_in, 1, 1), as one shared-kernel mixture.

    The per-sample conv tuner then weighs the unfused form (output_space: scale, then the dense conv) against
    the fused kernel, which applies the scale to its weight tiles instead of a pass over x.
    """
    x, padding = geometry.pad(x)
    mix = KernelMixture(None, weight.unsqueeze(0), None if bias is None else bias.unsqueeze(0),
                        channel=scale.reshape(x.shape[0], -1))
    return per_sample_conv(x, mix, None, geometry.stride, padding, geometry.dilation, geometry.groups)
