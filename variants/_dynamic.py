"""Shared machinery of the K-kernel dynamic convs (CondConv, DyConv, ODConv).

A kernel bank of shape (K, C_out, C_in/groups, kh, kw), the temperature schedule driven by training
progress; the per-sample convolution itself is `dynconv_bench.models.per_sample_conv` (strategies, autotuning).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dynconv_bench.models.conv_spec import ConvGeometry, ConvSpec
from dynconv_bench.models.per_sample_conv import KernelMixture, aggregate_kernels, per_sample_conv

__all__ = ["DynamicConv2d", "KernelMixture", "aggregate_kernels", "per_sample_conv"]

from ._temperature import AnnealedLayer, TemperatureSchedule

KERNEL_INITS = ("fan_out", "fan_out_grouped")


class DynamicConv2d(ConvGeometry, AnnealedLayer, nn.Module):
    """Base of the K-kernel dynamic convs: the replaced conv's geometry, the kernel bank and the schedule.

    Subclasses compute per-sample attention and call `_conv`.
    """

    def __init__(self, conv: nn.Conv2d, num_kernels: int, temperature: float | TemperatureSchedule = 1.0,
                 kernel_init: str = "fan_out") -> None:
        super().__init__()
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        if kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
        self.geometry = ConvSpec.from_conv(conv)
        self.num_kernels = num_kernels
        self.kernel_init = kernel_init
        dd = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        self.weight = nn.Parameter(torch.empty(num_kernels, *conv.weight.shape, **dd))
        self.bias = nn.Parameter(torch.empty(num_kernels, conv.out_channels, **dd)) if conv.bias is not None else None
        # a number is a constant temperature; the variants pass their (annealed) schedule
        self.schedule = (temperature if isinstance(temperature, TemperatureSchedule)
                         else TemperatureSchedule.constant(temperature))
        self.temperature = float(self.schedule.start)
        self.reset_kernels()

    @torch.no_grad()
    def reset_kernels(self) -> None:
        """Initialise each of the K kernels (and biases) independently."""
        kh, kw = self.kernel_size
        for i in range(self.num_kernels):
            if self.kernel_init == "fan_out":  # ODConv / torchvision: kaiming normal, fan_out = C_out*kh*kw
                nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")
            else:  # TF EfficientNet-CondConv (and timm's port): fan_out divided by groups
                fan_out = max(kh * kw * self.out_channels // self.groups, 1)
                nn.init.normal_(self.weight[i], 0.0, math.sqrt(2.0 / fan_out))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel() // self.out_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202
        # Module.to(memory_format=torch.channels_last) converts every 5-D tensor with a 4-D layout and
        # fails on the kernel bank: show it (and its grad) as 4-D (K*C_out, C_in/g, kh, kw) meanwhile,
        # then restore the contiguous 5-D bank that the aggregation matmul reads.
        shape = self.weight.shape
        tensors = [t for t in (self.weight, self.weight.grad) if t is not None]
        for t in tensors:
            t.data = t.data.reshape(-1, *shape[2:])
        try:
            return super()._apply(fn, recurse)
        finally:
            for t in (self.weight, self.weight.grad):
                if t is not None and t.dim() == 4:
                    t.data = t.data.reshape(shape).contiguous()

    def set_progress(self, progress: float) -> None:
        """Anneal the temperature with training progress (a TrainingProgress; a no-op when nothing anneals)."""
        self.temperature = self.schedule.at(progress)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor | KernelMixture,
              bias: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample conv: weight (B, C_out, C_in/groups, kh, kw) and bias (B, C_out), or a KernelMixture."""
        x, padding = self.geometry.pad(x)
        return per_sample_conv(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def _static_conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The same conv with one kernel for the whole batch."""
        return self.geometry.conv2d(x, weight, bias)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, num_kernels={self.num_kernels}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.schedule.anneals or self.schedule.start != 1.0:
            s += f", temperature={self.temperature:g}"
        return s
