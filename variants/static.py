"""Static baselines: the backbone as it is, and the same convs behind KernelDNA's SE attention."""

from __future__ import annotations

from torch import nn

from dynconv_bench import Param, Variant
from dynconv_bench.layers import SEConv
from dynconv_bench.sites import ConvSite


class Static(Variant):
    """The unmodified backbone: every conv stays a plain nn.Conv2d."""

    paper = "baseline (unmodified backbone)"
    params = {"policy": Param("blocks", "accepted for symmetry; nothing is converted", type=str)}


class StaticSE(Variant):
    """Each selected conv preceded by SE channel attention: extra attention, no dynamic kernel."""

    paper = "baseline: KernelDNA's SE routing without kernel sharing"
    params = {
        "reduction": Param(4, "SE bottleneck ratio (C -> C/reduction)", min=1),
        "min_channels": Param(1, "floor of the SE bottleneck width", min=1),
        "policy": Param("blocks", "which convs get SE attention", type=str),
    }

    def convert_conv(self, site: ConvSite) -> nn.Module:
        return SEConv(site.conv, self.cfg["reduction"], self.cfg["min_channels"])
