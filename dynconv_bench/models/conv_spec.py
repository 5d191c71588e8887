"""The geometry of a 2-D convolution as one frozen value, read by every converted layer and the sharing key."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from timm.layers import pad_same
from torch import nn


@dataclass(frozen=True)
class ConvSpec:
    """Channels, kernel, stride, padding (incl. timm's input-size-dependent TF 'SAME'), dilation, groups, mode."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    padding_mode: str = "zeros"
    tf_same: bool = False  # timm's Conv2dSame: padding computed in forward from the input size

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConvSpec:
        """The spec of an nn.Conv2d (or of a converted layer exposing `.geometry`)."""
        if isinstance(getattr(conv, "geometry", None), ConvSpec):
            return conv.geometry
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        return cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride), padding,
                   tuple(conv.dilation), conv.groups, conv.padding_mode,
                   any(t.__name__ == "Conv2dSame" for t in type(conv).__mro__))

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def differences(self, other: ConvSpec) -> list[str]:
        """Names of the fields in which two specs differ."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | str]:
        """The input as F.conv2d must see it, and the padding to pass along (TF-same, reflect, ... applied here)."""
        if self.tf_same:
            return pad_same(x, self.kernel_size, self.stride, self.dilation), (0, 0)
        if self.padding_mode != "zeros":
            return F.pad(x, _reversed_twice(self.padding, self.kernel_size, self.dilation),
                         mode=self.padding_mode), (0, 0)
        return x, self.padding

    def conv2d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The conv with this geometry and one kernel for the whole batch."""
        x, padding = self.pad(x)
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def make_conv(self, bias: bool, device: torch.device | None = None, dtype: torch.dtype | None = None) -> nn.Conv2d:
        """A new nn.Conv2d (timm's Conv2dSame for TF 'SAME') with this geometry."""
        kw = {"bias": bias, "device": device, "dtype": dtype}
        if self.tf_same:
            from timm.layers import Conv2dSame
            return Conv2dSame(self.in_channels, self.out_channels, self.kernel_size, self.stride, 0, self.dilation,
                              self.groups, **kw)
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.groups, padding_mode=self.padding_mode, **kw)


def _reversed_twice(padding: tuple[int, int] | str, kernel: tuple[int, int],
                    dilation: tuple[int, int]) -> tuple[int, ...]:
    """F.pad amounts (left, right, top, bottom) for a padding, as nn.Conv2d computes them."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out: list[int] = []
        for k, d in zip(reversed(kernel), reversed(dilation)):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = padding
    return (pw, pw, ph, ph)


class ConvGeometry:
    """Conv-like read-only attributes from `self.geometry`, so counters and reports treat a layer as a conv."""

    geometry: ConvSpec

    in_channels = property(lambda self: self.geometry.in_channels)
    out_channels = property(lambda self: self.geometry.out_channels)
    kernel_size = property(lambda self: self.geometry.kernel_size)
    stride = property(lambda self: self.geometry.stride)
    padding = property(lambda self: self.geometry.padding)
    dilation = property(lambda self: self.geometry.dilation)
    groups = property(lambda self: self.geometry.groups)
    padding_mode = property(lambda self: self.geometry.padding_mode)
