"""DyConv: Dynamic Convolution, attention over convolution kernels (Chen et al.; CVPR 2020).

W(x) = sum_k pi_k(x) W_k and b(x) = sum_k pi_k(x) b_k with
pi(x) = softmax(FC2(ReLU(FC1(GAP(x)))) / tau), tau annealed from 30 to 1 early in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import Param, Variant
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.models.variant import MAX_CHANNELS, MAX_KERNELS

from ._dynamic import DynamicConv2d, KernelMixture
from ._temperature import TemperatureSchedule, temperature_params


class KernelAttention(nn.Module):
    """Squeeze-and-excitation over the K kernels: GAP -> FC -> ReLU -> FC -> softmax(logits / tau)."""

    def __init__(self, in_channels: int, num_kernels: int, reduction: int = 4, min_channels: int = 1) -> None:
        super().__init__()
        hidden = max(in_channels // reduction, min_channels)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)

    def forward(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Kernel attention of shape (B, K); each row sums to 1."""
        s = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.softmax(self.fc2(F.relu(self.fc1(s))) / temperature, dim=1)


class DyConv2d(DynamicConv2d):
    """A conv whose kernel (and bias) is a softmax-attention mixture of `num_kernels` kernels."""

    def __init__(self, conv: nn.Conv2d, num_kernels: int = 4, reduction: int = 4, min_channels: int = 1,
                 temperature: float | TemperatureSchedule = TemperatureSchedule()) -> None:
        super().__init__(conv, num_kernels, temperature, kernel_init="fan_out")
        self.attention = KernelAttention(conv.in_channels, num_kernels, reduction, min_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pi = self.attention(x, self.temperature)
        return self._conv(x, KernelMixture(pi, self.weight, self.bias))


_IMAGENET = {"workers": 8, "image_size": 224, "dataset": "imagefolder"}
_PAPER = {"num_kernels": 4, "reduction": 4, "temperature": 30.0, "policy": "no-stem"}


class DyConv(Variant):
    """Dynamic Convolution: K kernels mixed per sample by temperature-annealed softmax attention."""

    paper = "Chen, Dai, Liu, Chen, Yuan, Liu. Dynamic Convolution: Attention over Convolution Kernels. CVPR 2020"
    year = 2020
    params = {
        "num_kernels": Param(4, "kernels per layer (K)", min=1, max=MAX_KERNELS),
        "reduction": Param(4, "attention bottleneck: C_in -> max(C_in // reduction, min_channels)", min=1,
                           max=MAX_CHANNELS),
        "min_channels": Param(1, "floor of the attention bottleneck width", min=1, max=MAX_CHANNELS),
        **temperature_params("the kernel softmax"),
        "policy": Param("no-stem", "which convs become dynamic", type=str),
    }
    # the paper's K=4, reduction 4, every conv but the stem, tau 30 -> 1 over the first 10 epochs
    # (of 100 for ResNet, 300 for MobileNetV2: see `recipes`)
    presets = {"paper": {
        "resnet18": {**_PAPER, "anneal_fraction": 10 / 100},
        "mobilenetv2_100": {**_PAPER, "anneal_fraction": 10 / 300},
        "mobilenetv2_050": {**_PAPER, "anneal_fraction": 10 / 300},
    }}
    recipes = {
        "dyconv-resnet": {"epochs": 100, "batch_size": 256, "lr": 0.1, "weight_decay": 1e-4, "schedule": "step",
                          "milestones": (30, 60, 90), **_IMAGENET,
                          "source": "DyConv (Chen et al. 2020): ResNet, lr /10 at 30/60/90; temperature 30->1 over "
                                    "10 epochs"},
        "dyconv-mobilenetv2": {"epochs": 300, "batch_size": 256, "lr": 0.05, "weight_decay": 4e-5, **_IMAGENET,
                               "source": "DyConv (Chen et al. 2020): MobileNetV2, cosine"},
    }

    def convert_conv(self, site: ConvSite) -> nn.Module:
        c = self.cfg
        return DyConv2d(site.conv, c["num_kernels"], c["reduction"], c["min_channels"],
                        TemperatureSchedule.from_config(c))
