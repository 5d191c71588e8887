"""CondConv: Conditionally Parameterized Convolutions (Yang, Bender, Le, Ngiam; NeurIPS 2019).

W(x) = sum_i r_i(x) W_i with routing r(x) = sigmoid(GAP(x) R + c): one linear layer and a sigmoid,
per example. Routing is per layer (the paper's equation) or, as in the official
EfficientNet-CondConv, one routing vector per block shared by the block's converted convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynconv_bench import Param, Variant
from dynconv_bench.errors import ConfigError
from dynconv_bench.models.variant import MAX_KERNELS, StageContext

from ._dynamic import DynamicConv2d, KernelMixture


class CondConv2d(DynamicConv2d):
    """A conv whose kernel (and bias) is a sigmoid-routed mixture of `num_kernels` experts.

    With `routing_from` set, the layer owns no router and reuses the routing vector that layer
    computed in the same forward pass (block-shared routing); otherwise it routes on its own input.
    """

    def __init__(self, conv: nn.Conv2d, num_kernels: int = 4, routing_from: CondConv2d | None = None) -> None:
        super().__init__(conv, num_kernels, kernel_init="fan_out_grouped")
        if routing_from is not None and routing_from.router is None:
            raise ValueError("routing_from must be a CondConv2d that owns a router")
        self.router = nn.Linear(conv.in_channels, num_kernels) if routing_from is None else None
        # a plain list so the leader is not registered (and counted) twice as a submodule
        self._leader = [routing_from] if routing_from is not None else []
        self._last_routing: torch.Tensor | None = None
        self._followed = False  # keep the routing of a pass only for followers (export sees no side effect)
        if routing_from is not None:
            routing_from._followed = True

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Routing weights (B, K) in [0, 1] for input `x` (or the shared vector of this pass)."""
        if self._leader:
            r = self._leader[0]._last_routing
            if r is None or r.shape[0] != x.shape[0]:
                raise RuntimeError("block-shared CondConv routing used before the block's first CondConv ran")
            return r
        r = torch.sigmoid(self.router(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        if self._followed:
            self._last_routing = r
        return r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.routing(x)
        return self._conv(x, KernelMixture(r, self.weight, self.bias))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_last_routing"] = None  # never pickle or deep-copy the activations of a past pass
        return state


def _default_experts(model: nn.Module) -> int:
    """The paper's main configurations: 8 experts on EfficientNet, 4 elsewhere."""
    return 8 if "efficientnet" in type(model).__name__.lower() else 4


class CondConv(Variant):
    """CondConv: K expert kernels mixed per example by sigmoid routing (per layer or per block)."""

    paper = "Yang, Bender, Le, Ngiam. CondConv: Conditionally Parameterized Convolutions. NeurIPS 2019"
    year = 2019
    params = {
        "num_kernels": Param(None, "experts per layer (default: 8 on EfficientNet, 4 otherwise)",
                             type=(int, type(None)), min=1, max=MAX_KERNELS),
        "routing": Param("layer", "'layer': each conv routes on its input; 'block': one routing vector "
                                  "per block, from the input of its first converted conv", choices=("layer", "block")),
        "policy": Param("blocks", "which convs become CondConv", type=str),
    }
    # CondConv-EfficientNet-B0 (paper Table 2; timm's efficientnet_cc_b0_8e): experts in the last three stages
    presets = {"paper": {"efficientnet_b0": {"num_kernels": 8, "routing": "block", "policy": "last-3-stages"}}}

    def __init__(self, **cfg: object) -> None:
        super().__init__(**cfg)
        self._auto_experts = self.cfg["num_kernels"] is None

    @classmethod
    def validate(cls, cfg: dict) -> dict:
        out = super().validate(cfg)
        k = out["num_kernels"]
        if k is not None and k < 1:
            raise ConfigError(f"{cls.name}: num_kernels={k!r} is below the minimum 1")
        return out

    def convert_stage(self, ctx: StageContext) -> dict[str, nn.Module]:
        if self._auto_experts:  # resolved per model, so the conversion report shows the number used
            self.cfg["num_kernels"] = _default_experts(ctx.model)
        k = self.cfg["num_kernels"]
        out: dict[str, nn.Module] = {}
        leaders: dict[str, CondConv2d] = {}
        for site in ctx.sites:
            leader = leaders.get(site.block) if self.cfg["routing"] == "block" and site.block else None
            layer = CondConv2d(site.conv, k, routing_from=leader)
            if leader is None and site.block:
                leaders[site.block] = layer
            out[site.name] = layer
        return out
