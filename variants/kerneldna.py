"""KernelDNA (Huang, Zhang, Ren, 2025): children derived from a shared parent kernel by decoupled adapters.

A child conv reuses its parent's weight tensor, modulated by static (input-independent, foldable)
spatial and filter deltas, W_child = W_parent * (1 + S) * (1 + F), and scales its input channels
per sample with SE-style routing. At inference the child is one dense conv preceded by its SE.
"""

from __future__ import annotations

import torch
from torch import nn

from dynconv_bench import DynamicLayer, Param, StageContext, Variant
from dynconv_bench.models.conv_spec import ConvGeometry, ConvSpec
from dynconv_bench.models.layers import scaled_input_conv
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.models.triton_conv import prefers_fused
from dynconv_bench.models.variant import MAX_CHANNELS

from ._se import ChannelSE, SEConv

__all__ = ["KernelDNA", "KernelDNAConv", "adapter_sites", "share_kernel"]


class KernelDNAConv(ConvGeometry, DynamicLayer, nn.Module):
    """A child conv: its parent's weight (the same nn.Parameter) with static modulation and SE routing.

    Spatial modulation S has shape (1, 1, kh, kw) and is only created for kernels larger than 1x1
    (for a 1x1 kernel it would be one scalar, which filter modulation already covers); filter
    modulation F has shape (C_out, 1, 1, 1). Both are zero-initialised deltas, so a new child
    computes exactly its parent's conv on the same (SE-scaled) input.
    """

    def __init__(self, parent: nn.Conv2d, spatial: bool = True, filter: bool = True, se: bool = True,
                 reduction: int = 4, min_channels: int = 1) -> None:
        super().__init__()
        if not isinstance(parent, nn.Conv2d):
            raise TypeError(f"a KernelDNA parent must be an nn.Conv2d, got {type(parent).__name__}")
        self.geometry = ConvSpec.from_conv(parent)
        self.weight = parent.weight  # the parent's Parameter itself: shared, counted once
        self.bias = parent.bias
        kh, kw = self.kernel_size
        self.spatial = nn.Parameter(torch.zeros(1, 1, kh, kw)) if spatial and kh * kw > 1 else None
        self.filter = nn.Parameter(torch.zeros(self.out_channels, 1, 1, 1)) if filter else None
        self.se = ChannelSE(self.in_channels, reduction, min_channels) if se else None

    def modulated_weight(self) -> torch.Tensor:
        """The child's kernel: W_parent * (1 + S) * (1 + F)."""
        w = self.weight
        if self.spatial is not None:
            w = w * (1 + self.spatial)
        if self.filter is not None:
            w = w * (1 + self.filter)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            scale = self.se(x)
            if prefers_fused(x):  # the SE scale applied to the kernel's input columns inside the conv
                return scaled_input_conv(self.geometry, x, scale, self.modulated_weight(), self.bias)
            x = x * scale
        return self.geometry.conv2d(x, self.modulated_weight(), self.bias)

    def param_categories(self) -> dict[str, str]:
        """Parameter categories for the counters: shared kernel, static modulation (SE goes to attention)."""
        out = {"weight": "conv"}
        if self.bias is not None:
            out["bias"] = "conv"
        for name in ("spatial", "filter"):
            if getattr(self, name) is not None:
                out[name] = "modulation"
        return out

    def to_conv(self) -> nn.Conv2d:
        """A plain nn.Conv2d holding the folded kernel (a new tensor, no longer shared)."""
        conv = self.geometry.make_conv(self.bias is not None, self.weight.device, self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.modulated_weight())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def deploy_module(self) -> nn.Module:
        """Inference form: the folded dense conv, preceded by the SE scaling when SE is on."""
        conv = self.to_conv()
        if self.se is None:
            return conv
        return SEConv(conv, se=self.se).train(self.training)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, spatial={self.spatial is not None}, filter={self.filter is not None}")


def share_kernel(parent: nn.Conv2d, child: nn.Conv2d | None = None, **kw: object) -> KernelDNAConv:
    """A KernelDNAConv deriving from `parent`; `child` (the conv it replaces) must have the same geometry."""
    if child is not None:
        a, b = ConvSpec.from_conv(parent), ConvSpec.from_conv(child)
        for attr in a.differences(b):
            raise ValueError(f"cannot share a kernel between convs with different {attr}: "
                             f"{getattr(a, attr)} vs {getattr(b, attr)}")
        if (parent.bias is None) != (child.bias is None):
            raise ValueError("cannot share a kernel between a conv with bias and one without")
    return KernelDNAConv(parent, **kw)  # type: ignore[arg-type]


_IMAGENET = {"workers": 8, "image_size": 224, "dataset": "imagefolder"}
_PAPER_ADAPTER = {"reduction": 4, "spatial": True, "filter": True, "se": True, "parent": "last"}


class KernelDNA(Variant):
    """Plug-in KernelDNA: within each stage, convs of identical shape/stride/groups share one parent kernel."""

    paper = "KernelDNA: Dynamic Kernel Sharing via Decoupled Naive Adapters (Huang, Zhang, Ren)"
    year = 2025
    params = {
        "reduction": Param(4, "SE bottleneck ratio on a child's input (C -> C/reduction)", min=1,
                           max=MAX_CHANNELS),
        "parent": Param("last", "which member of a sharing group keeps the weight", choices=("first", "last")),
        "spatial": Param(True, "static spatial modulation S (1,1,k,k) of kernels larger than 1x1"),
        "filter": Param(True, "static filter modulation F (C_out,1,1,1)"),
        "se": Param(True, "SE-style dynamic routing on each child's input"),
        "require_saving": Param(True, "derive a child only where its adapter has fewer parameters than the "
                                      "kernel it replaces (e.g. not MobileNetV2's depthwise convs)"),
        "policy": Param("blocks", "which convs may share kernels", type=str),
    }
    # the plug-in form over the convs the paper shares (SE ratio 4, spatial + filter modulation): ResNet18's
    # layer3/layer4 block convs, ResNet50's layer3/layer4 3x3s; the paper's own deeper architectures are
    # the kerneldna_* backbones
    presets = {"paper": {
        "resnet18": {**_PAPER_ADAPTER, "policy": r"re:^layer[34]\.\d+\.conv[12]$"},
        "resnet50": {**_PAPER_ADAPTER, "policy": r"re:^layer[34]\.\d+\.conv2$"},
    }}
    # the official release's ImageNet training (SGD momentum 0.9, cosine, no label smoothing, no temperature)
    recipes = {
        "kerneldna-resnet18": {"epochs": 90, "batch_size": 256, "lr": 0.1, "weight_decay": 1e-4, **_IMAGENET,
                               "source": "KernelDNA official release: ResNet18"},
        "kerneldna-resnet50": {"epochs": 300, "batch_size": 256, "lr": 0.1, "weight_decay": 1e-4, "warmup_epochs": 20,
                               **_IMAGENET, "source": "KernelDNA official release: ResNet50"},
        "kerneldna-mobilenetv2": {"epochs": 150, "batch_size": 256, "lr": 0.05, "weight_decay": 4e-5, **_IMAGENET,
                                  "source": "KernelDNA official release: MobileNetV2"},
    }

    def convert_stage(self, ctx: StageContext) -> dict[str, nn.Module]:
        kw = {k: self.cfg[k] for k in ("spatial", "filter", "se", "reduction")}
        return {child.name: share_kernel(parent.conv, child.conv, **kw)
                for child, parent in adapter_sites(ctx, self.cfg["parent"], self.cfg["require_saving"], **kw)}


    def why_nothing_converted(self, stages: list[StageContext]) -> str:
        n = sum(len(ctx.sites) for ctx in stages)
        pairs = sum(len(g) - 1 for ctx in stages for g in ctx.groups() if len(g) > 1)
        if not pairs:
            return (f"KernelDNA found no shareable pairs: no two of the {n} selected convs in one stage ({len(stages)} "
                    "stages) have the same shape, stride, dilation and groups")
        return (f"KernelDNA found {pairs} shareable convs, but no adapter is smaller than the kernel it would "
                "replace (require_saving=True)")


def adapter_sites(ctx: StageContext, parent: str = "last", require_saving: bool = True,
                  **child_kw: object) -> list[tuple[ConvSite, ConvSite]]:
    """(child, parent) sites of one stage where the plug-in derives a child from a parent kernel.

    Within each sharing group the first or last member is the parent; with `require_saving` a site
    becomes a child only where its adapter (built with `child_kw`) is smaller than its own kernel.
    """
    out: list[tuple[ConvSite, ConvSite]] = []
    for group in ctx.groups():
        if len(group) < 2:
            continue  # nothing to share with
        keeper = group[0] if parent == "first" else group[-1]
        for site in group:
            if site is keeper:
                continue
            if require_saving and _own_params(share_kernel(keeper.conv, site.conv, **child_kw)) >= site.conv.weight.numel():
                continue  # the adapter would cost more than the kernel it saves
            out.append((site, keeper))
    return out


def _own_params(child: KernelDNAConv) -> int:
    """Parameters a child adds on top of its parent's shared kernel (modulation and SE)."""
    shared = {id(child.weight), id(child.bias)}
    return sum(p.numel() for p in child.parameters() if id(p) not in shared)
