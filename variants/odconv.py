"""ODConv: Omni-Dimensional Dynamic Convolution (Li, Zhou, Yao; ICLR 2022).

Four attentions from one squeeze: over input channels, output filters, kernel positions and the
K kernels. W(x) = sum_i a_k,i * a_s * W_i; the channel attention scales the input and the filter
attention the output, which equals putting them on the kernel (as the official release does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import Param, Variant
from dynconv_bench.models.layers import batchnorm_any_batch
from dynconv_bench.models.per_sample_conv import capturing_graph, conv_output_size, match_memory_format
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.models.triton_conv import prefers_fused
from dynconv_bench.models.variant import MAX_CHANNELS, MAX_KERNELS

from ._dynamic import DynamicConv2d, KernelMixture, aggregate_kernels
from ._temperature import TemperatureSchedule, temperature_params


class ODAttention(nn.Module):
    """GAP -> 1x1 conv (no bias) -> BN -> ReLU -> channel / filter / spatial / kernel heads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], groups: int,
                 num_kernels: int, reduction: float = 0.0625, min_channels: int = 16) -> None:
        super().__init__()
        hidden = max(int(in_channels * reduction), min_channels)
        self.kernel_size = kernel_size
        self.fc = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.channel_fc = nn.Conv2d(hidden, in_channels, 1)
        depthwise = in_channels == groups and in_channels == out_channels
        self.filter_fc = None if depthwise else nn.Conv2d(hidden, out_channels, 1)
        self.spatial_fc = None if kernel_size == (1, 1) else nn.Conv2d(hidden, kernel_size[0] * kernel_size[1], 1)
        self.kernel_fc = None if num_kernels == 1 else nn.Conv2d(hidden, num_kernels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, temperature: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Channel (B, C_in), filter (B, C_out), spatial (B, kh, kw) and kernel (B, K) attention.

        Heads a layer does not have (filter for depthwise, spatial for 1x1, kernel for K=1) are None.
        """
        b = x.shape[0]
        # the heads are 1x1 convs (as in the official release) applied to a pooled vector: run them as linears
        s = F.linear(x.mean((2, 3)), self.fc.weight.flatten(1))
        s = F.relu(batchnorm_any_batch(self.bn, s.view(b, -1, 1, 1)).view(b, -1))

        def head(conv: nn.Conv2d) -> torch.Tensor:
            return F.linear(s, conv.weight.flatten(1), conv.bias) / temperature

        channel = torch.sigmoid(head(self.channel_fc))
        filt = None if self.filter_fc is None else torch.sigmoid(head(self.filter_fc))
        spatial = None if self.spatial_fc is None else torch.sigmoid(head(self.spatial_fc)).view(b, *self.kernel_size)
        kernel = None if self.kernel_fc is None else torch.softmax(head(self.kernel_fc), 1)
        return channel, filt, spatial, kernel


class ODConv2d(DynamicConv2d):
    """A conv with ODConv's four attentions over a bank of `num_kernels` kernels.

    A bias (absent in the paper) is mixed by the kernel attention and added after the filter attention.
    """

    def __init__(self, conv: nn.Conv2d, num_kernels: int = 4, reduction: float = 0.0625, min_channels: int = 16,
                 temperature: float | TemperatureSchedule = TemperatureSchedule()) -> None:
        super().__init__(conv, num_kernels, temperature, kernel_init="fan_out")
        self.attention = ODAttention(conv.in_channels, conv.out_channels, self.kernel_size, conv.groups,
                                     num_kernels, reduction, min_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel, filt, spatial, kernel = self.attention(x, self.temperature)
        b = x.shape[0]
        bias = None
        if self.bias is not None:
            bias = self.bias[0].expand(b, -1) if kernel is None else kernel.to(self.bias.dtype) @ self.bias
        # while a graph is captured, no branch on the batch size (torch.export keeps the batch dynamic)
        capturing = capturing_graph()
        per_sample = kernel is not None or spatial is not None or (b == 1 and not capturing)
        if per_sample and prefers_fused(x):  # all four attentions in one lazy kernel: the tuner picks how to run it
            return self._conv(x, KernelMixture(kernel, self.weight, self.bias, channel, filt, spatial))
        if not capturing and spatial is not None and b > 1 and self._cheaper_on_columns(x):
            out = self._conv_columns(x, channel, spatial, kernel)
        elif per_sample and not capturing and self._cheaper_on_kernel(x):
            # scaling the per-sample kernels costs less than scaling this layer's feature maps
            weight = self.weight[0].unsqueeze(0) if kernel is None else aggregate_kernels(kernel, self.weight)
            scale = self._kernel_scale(channel, filt).to(weight.dtype)
            if spatial is not None:
                scale = scale * spatial.view(b, 1, 1, *self.kernel_size).to(weight.dtype)
            return self._conv(x, weight * scale, bias)
        else:
            x = x * channel.view(*channel.shape, 1, 1).to(x.dtype)
            if not per_sample:  # the same kernel for every sample: one plain conv
                out = self._static_conv(x, self.weight[0], None)
            else:
                weight = self.weight[0].unsqueeze(0) if kernel is None else aggregate_kernels(kernel, self.weight)
                if spatial is not None:
                    weight = weight * spatial.view(b, 1, 1, *self.kernel_size).to(weight.dtype)
                out = self._conv(x, weight, None)
        if filt is not None:
            out = out * filt.view(*filt.shape, 1, 1).to(out.dtype)
        if bias is not None:
            out = out + bias.view(*bias.shape, 1, 1).to(out.dtype)
        return out

    def _cheaper_on_columns(self, x: torch.Tensor) -> bool:
        """Whether B per-sample kernels outweigh the unfolded input (C_out >= 2x output positions: late stages).

        Then channel and spatial attention scale the unfolded input instead (both act per input column:
        channel x tap), and a shared kernel (K = 1) stays one GEMM for the whole batch.
        """
        if self.groups != 1 or isinstance(self.padding, str):
            return False
        positions = (x.shape[2] // self.stride[0]) * (x.shape[3] // self.stride[1])
        # measured on CPU (ResNet18 at 224, b16): columns win 2-4x at 512 outputs x 49 positions, lose
        # 2x at 256 x 196; unfold and its copies cost about what the per-sample kernels save below 2x
        return self.out_channels >= 2 * positions

    def _conv_columns(self, x: torch.Tensor, channel: torch.Tensor, spatial: torch.Tensor,
                      kernel: torch.Tensor | None) -> torch.Tensor:
        """The conv without filter attention and bias, as unfold -> columns scaled by channel x spatial
        attention -> one GEMM (shared kernel) or one bmm (per-sample mixtures)."""
        b, c = x.shape[:2]
        xp, pad = self.geometry.pad(x)  # TF-same / reflect padding applied here; numbers otherwise
        h_out, w_out = conv_output_size(xp.shape[2], xp.shape[3], self.kernel_size, self.stride, pad, self.dilation)
        cols = F.unfold(xp, self.kernel_size, self.dilation, pad, self.stride)  # (B, C*kh*kw, L)
        scale = channel.view(b, c, 1) * spatial.view(b, 1, -1)
        cols = cols * scale.view(b, -1, 1).to(cols.dtype)
        if kernel is None:
            out = torch.matmul(self.weight[0].view(self.out_channels, -1).to(cols.dtype), cols)
        else:
            weight = aggregate_kernels(kernel, self.weight).view(b, self.out_channels, -1)
            out = torch.bmm(weight.to(cols.dtype), cols)
        return match_memory_format(out.view(b, self.out_channels, h_out, w_out), x)

    def _cheaper_on_kernel(self, x: torch.Tensor) -> bool:
        """Whether scaling B per-sample kernels touches fewer numbers than scaling input and output maps."""
        kernel_numel = x.shape[0] * self.weight[0].numel()
        out_ratio = self.out_channels / (self.in_channels * self.stride[0] * self.stride[1])
        return kernel_numel < x.numel() * (1.0 + out_ratio)

    def _kernel_scale(self, channel: torch.Tensor, filt: torch.Tensor | None) -> torch.Tensor:
        """Channel and filter attention as a per-sample scale of the kernel: (B, C_out, C_in/groups, 1, 1)."""
        b, g = channel.shape[0], self.groups
        cin_g, cout_g = self.in_channels // g, self.out_channels // g
        scale = channel.view(b, g, 1, cin_g).expand(b, g, cout_g, cin_g).reshape(b, self.out_channels, cin_g)
        if filt is not None:
            scale = scale * filt.view(b, self.out_channels, 1)
        return scale.view(b, self.out_channels, cin_g, 1, 1)


_IMAGENET = {"workers": 8, "image_size": 224, "dataset": "imagefolder"}
# epochs of the official recipes (tau 30 -> 1 over the first 10 of them)
_PAPER_EPOCHS = {"resnet18": 100, "resnet50": 100, "mobilenetv2_100": 150, "mobilenetv2_050": 150}


def _paper(backbone: str) -> dict[str, object]:
    """The release's attention (reduction 1/16, floor 16) and layer choice for one backbone."""
    policy = "blocks+head" if backbone.startswith("mobilenetv2") else "blocks"
    return {"reduction": 0.0625, "min_channels": 16, "temperature": 30.0, "policy": policy,
            "anneal_fraction": 10 / _PAPER_EPOCHS[backbone]}


class ODConv(Variant):
    """ODConv: per-layer attention over input channels, filters, kernel positions and K kernels."""

    paper = "Li, Zhou, Yao. Omni-Dimensional Dynamic Convolution. ICLR 2022"
    year = 2022
    params = {
        "num_kernels": Param(4, "kernels per layer (the paper's '1x' is 1, '4x' is 4)", min=1, max=MAX_KERNELS),
        "reduction": Param(0.0625, "attention width = max(int(C_in * reduction), min_channels)", type=float,
                           min=1e-6, max=1.0),
        "min_channels": Param(16, "floor of the attention width", min=1, max=MAX_CHANNELS),
        **temperature_params("all four attentions"),
        "policy": Param("blocks+head", "which convs become ODConv", type=str),
    }
    # the official release: "paper" is ODConv 1x (its default kernel_num=1), "paper-4x" the 4-kernel model
    presets = {name: {backbone: {**_paper(backbone), "num_kernels": k} for backbone in _PAPER_EPOCHS}
               for name, k in (("paper", 1), ("paper-4x", 4))}
    recipes = {
        "odconv-resnet": {"epochs": 100, "batch_size": 256, "lr": 0.1, "weight_decay": 1e-4, "schedule": "step",
                          "milestones": (30, 60, 90), **_IMAGENET,
                          "source": "ODConv official release: ResNet18/50, lr /10 at 30/60/90; temperature 30->1 "
                                    "over 10 epochs"},
        "odconv-mobilenetv2": {"epochs": 150, "batch_size": 256, "lr": 0.05, "weight_decay": 4e-5, **_IMAGENET,
                               "source": "ODConv official release: MobileNetV2, cosine"},
    }

    def convert_conv(self, site: ConvSite) -> nn.Module:
        c = self.cfg
        return ODConv2d(site.conv, c["num_kernels"], c["reduction"], c["min_channels"],
                        TemperatureSchedule.from_config(c))
