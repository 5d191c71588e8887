"""Small layers shared by several variants."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .conv_spec import ConvGeometry, ConvSpec
from .per_sample_conv import KernelMixture, per_sample_conv

__all__ = ["ConvGeometry", "ConvSpec", "batchnorm_any_batch", "recomputing_batchnorm", "scaled_input_conv"]


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
