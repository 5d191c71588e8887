"""timm's CondConv EfficientNets (efficientnet_cc_b0_4e / _8e): the paper's CondConv-EfficientNet-B0 as timm ports it.

timm's CondConv2d stores each expert flattened, weight (E, C_out * C_in/g * k * k), and one routing linear per
block (`routing_fn`, sigmoid of the pooled block input) shared by the block's three convs: ours is the same
EfficientNet-B0 with `condconv` (routing='block', experts in the last three stages), whose block router is the
first CondConv's (`conv_pw.router`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from dynconv_bench.models.published import EvalTransform, Pair, PaperResult, Placement, register_pair

TRANSFORM = EvalTransform(256, 224, "bicubic", source="timm pretrained_cfg of efficientnet_cc_b0_*: crop_pct 0.875, "
                                                      "bicubic, ImageNet mean/std")
_CC = re.compile(r"(blocks\.\d+\.\d+)\.(conv_pw|conv_dw|conv_pwl)\.weight$")
_ROUTING = re.compile(r"(blocks\.\d+\.\d+)\.routing_fn\.(weight|bias)$")


def _place(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement | None:
    m = _ROUTING.match(key)
    if m is not None:
        return [(f"{m.group(1)}.conv_pw.router.{m.group(2)}", tensor)]
    m = _CC.match(key)
    if m is not None and tensor.dim() == 2:  # a CondConv expert bank: unflatten to ours (E, C_out, C_in/g, k, k)
        try:
            shape = model.get_parameter(key).shape
        except AttributeError:
            return None
        if tensor.numel() != shape.numel():
            return [(key, tensor)]  # the shape check names both
        return [(key, tensor.reshape(shape))]
    return [(key, tensor)]


for experts, top1 in ((4, 77.8), (8, 78.3)):
    register_pair(Pair("timm", f"efficientnet_cc_b0_{experts}e", "efficientnet_b0", "condconv",
                       {"num_kernels": experts, "routing": "block", "policy": "last-3-stages"}, _place, TRANSFORM,
                       "classifier.weight",
                       PaperResult(top1, "CondConv paper (NeurIPS 2019): CondConv-EfficientNet-B0 "
                                         f"({experts} experts); timm's weights are its own port"),
                       f"timm.create_model('efficientnet_cc_b0_{experts}e')"))


# -- test fixtures (scripts/make_release_fixtures.py finds them through this module's entry point) ---------------
# cases: (arch, classes, input size, release modules whose input and output are saved; None = the whole model)
FIXTURE_CASES = [("efficientnet_cc_b0_4e", 10, 64, ["blocks.4.0"])]


def fixture_builders(get):  # noqa: ANN001, ANN201
    """arch -> f(num_classes) building the release's own model: timm's (the installed one; `get` is unused)."""
    import timm

    return {a: (lambda n, a=a: timm.create_model(a, num_classes=n)) for a in
            ("efficientnet_cc_b0_4e", "efficientnet_cc_b0_8e")}
