"""Shared machinery of the K-kernel dynamic convs (CondConv, DyConv, ODConv).

A kernel bank of shape (K, C_out, C_in/groups, kh, kw), the temperature schedule driven by training
progress, the per-sample kernel aggregation (one matmul) and the per-sample convolution (one grouped
conv with the batch folded into channels; one plain conv at batch 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import DynamicLayer
from dynconv_bench.layers import copy_conv_geometry

from ._temperature import TemperatureSchedule

KERNEL_INITS = ("fan_out", "fan_out_grouped")


def aggregate_kernels(attention: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Per-sample kernels sum_k attention[b, k] * bank[k] as one matmul: (B, K) x (K, ...) -> (B, ...)."""
    flat = torch.mm(attention.to(bank.dtype), bank.reshape(bank.shape[0], -1))  # autocast still applies
    return flat.view(attention.shape[0], *bank.shape[1:])


def per_sample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    stride: tuple[int, int], padding: tuple[int, int] | str, dilation: tuple[int, int],
                    groups: int) -> torch.Tensor:
    """Convolve sample b of `x` with weight[b] (and bias[b]): one conv for the whole batch.

    Batch 1 is a plain conv with the aggregated kernel; larger batches fold the batch into channels
    and run one grouped conv with groups = B * groups.
    """
    b = x.shape[0]
    if b == 1:
        return F.conv2d(x, weight[0], None if bias is None else bias[0], stride, padding, dilation, groups)
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    out = F.conv2d(x.reshape(1, b * x.shape[1], x.shape[2], x.shape[3]),
                   weight.reshape(b * weight.shape[1], *weight.shape[2:]),
                   None if bias is None else bias.reshape(-1), stride, padding, dilation, groups * b)
    out = out.view(b, weight.shape[1], out.shape[2], out.shape[3])
    if channels_last:  # hand the next layer the memory format it was given
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _same_pad(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 'SAME' padding as timm's Conv2dSame computes it from the input size."""
    pads = []
    for size, k, s, d in zip(x.shape[-2:], kernel, stride, dilation):
        pads.append(max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0))
    ph, pw = pads
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class DynamicConv2d(DynamicLayer, nn.Module):
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
        copy_conv_geometry(self, conv)
        self.num_kernels = num_kernels
        # timm's Conv2dSame pads in forward from the input size (TF 'SAME'); keep that behaviour
        self.tf_same = type(conv).__name__ == "Conv2dSame"
        self._reversed_padding = getattr(conv, "_reversed_padding_repeated_twice", None)
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

    def _pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | str]:
        if self.tf_same:
            return _same_pad(x, self.kernel_size, self.stride, self.dilation), (0, 0)
        if self.padding_mode != "zeros" and self._reversed_padding is not None:
            return F.pad(x, self._reversed_padding, mode=self.padding_mode), (0, 0)
        return x, self.padding

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Per-sample conv: weight (B, C_out, C_in/groups, kh, kw), bias (B, C_out) or None."""
        x, padding = self._pad_input(x)
        return per_sample_conv(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def _static_conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The same conv with one kernel for the whole batch."""
        x, padding = self._pad_input(x)
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

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
