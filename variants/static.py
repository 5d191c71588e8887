"""Static baselines: the backbone as it is, and the same convs behind KernelDNA's SE attention."""

from __future__ import annotations

from torch import nn

from dynconv_bench import Param, StageContext, Variant
from dynconv_bench.models.variant import MAX_CHANNELS

from ._se import SEConv
from .kerneldna import KernelDNA, adapter_sites

SITES = ("kerneldna", "all")


class Static(Variant):
    """The unmodified backbone: every conv stays a plain nn.Conv2d."""

    paper = "baseline (unmodified backbone)"
    converts_layers = False
    params = {"policy": Param("blocks", "accepted for symmetry; nothing is converted", type=str)}


class StaticSE(Variant):
    """SE channel attention on the convs where KernelDNA puts adapters: the same routing, no kernel sharing."""

    paper = "baseline: KernelDNA's SE routing without kernel sharing"
    params = {
        "reduction": Param(4, "SE bottleneck ratio (C -> C/reduction)", min=1, max=MAX_CHANNELS),
        "min_channels": Param(1, "floor of the SE bottleneck width", min=1, max=MAX_CHANNELS),
        "sites": Param("kerneldna", "where SE goes: 'kerneldna' (the convs the KernelDNA plug-in turns into "
                                    "children, with its defaults) or 'all' (every conv the policy selects)",
                       choices=SITES),
        "policy": Param("blocks", "which convs may get SE attention", type=str),
    }

    def convert_stage(self, ctx: StageContext) -> dict[str, nn.Module]:
        sites = ctx.sites
        if self.cfg["sites"] == "kerneldna":
            # KernelDNA's children carry an SE of this reduction beside their static modulation
            kw = {k: p.default for k, p in KernelDNA.params.items() if k in ("spatial", "filter", "se")}
            sites = [child for child, _ in adapter_sites(ctx, KernelDNA.params["parent"].default,
                                                         KernelDNA.params["require_saving"].default,
                                                         reduction=self.cfg["reduction"], **kw)]
        return {site.name: SEConv(site.conv, self.cfg["reduction"], self.cfg["min_channels"]) for site in sites}

    def why_nothing_converted(self, stages: list[StageContext]) -> str:
        if self.cfg["sites"] == "kerneldna":
            return f"its SE sites are KernelDNA's children, and {KernelDNA().why_nothing_converted(stages)}"
        return super().why_nothing_converted(stages)
