"""ODConv official release (github.com/OSVAI/ODConv): od_resnet18/50 and od_mobilenetv2_050/075/100, 1x and 4x.

The release's ODConv2d holds the same tensors under the same names as ours (weight (K, C_out, C_in/g, k, k),
attention.fc / bn / channel_fc / filter_fc / spatial_fc / kernel_fc); its ResNets use torchvision's names, as
timm's do, and its MobileNetV2 torchvision's `features.*` layout. A trained model is evaluated at temperature 1
(the release's attention starts at 1 and the checkpoint stores no temperature).
"""

from __future__ import annotations

import torch
from torch import nn

from dynconv_bench.models.published import EvalTransform, Pair, PaperResult, Placement, register_pair

from .layouts import mobilenetv2_key

TRANSFORM = EvalTransform(256, 224, "bilinear", source="ODConv main.py: Resize(256), CenterCrop(224), ImageNet mean/std")
README = "ODConv README (ImageNet top-1 of the released models)"
_ODCONV = {"reduction": 0.0625, "min_channels": 16, "temperature": 1.0}


def _same(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement:
    return [(key, tensor)]


def _mobilenetv2(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement | None:
    ours = mobilenetv2_key(key)
    return None if ours is None else [(ours, tensor)]


# (architecture, backbone, kernels, policy, placer, classifier, reported top-1, release builder); on ResNets
# "blocks+head" (the variant's default) selects the same 16 / 48 convs as "blocks": they have no head conv
_ARCHS = [
    ("resnet18_1x", "resnet18", 1, "blocks+head", _same, "fc.weight", 73.05, "od_resnet18(kernel_num=1)"),
    ("resnet18_4x", "resnet18", 4, "blocks+head", _same, "fc.weight", 74.19, "od_resnet18(kernel_num=4)"),
    ("resnet50_1x", "resnet50", 1, "blocks+head", _same, "fc.weight", 77.87, "od_resnet50(kernel_num=1)"),
    ("resnet50_4x", "resnet50", 4, "blocks+head", _same, "fc.weight", 78.50, "od_resnet50(kernel_num=4)"),
    ("mobilenetv2_100_1x", "mobilenetv2_100", 1, "blocks+head", _mobilenetv2, "classifier.1.weight", 74.74,
     "od_mobilenetv2_100(kernel_num=1)"),
    ("mobilenetv2_100_4x", "mobilenetv2_100", 4, "blocks+head", _mobilenetv2, "classifier.1.weight", 75.29,
     "od_mobilenetv2_100(kernel_num=4)"),
    ("mobilenetv2_050_1x", "mobilenetv2_050", 1, "blocks+head", _mobilenetv2, "classifier.1.weight", 68.06,
     "od_mobilenetv2_050(kernel_num=1)"),
    ("mobilenetv2_050_4x", "mobilenetv2_050", 4, "blocks+head", _mobilenetv2, "classifier.1.weight", 70.23,
     "od_mobilenetv2_050(kernel_num=4)"),
    # not a released width: the narrowest timm MobileNetV2, for whole-model fixtures (no reported accuracy)
    ("mobilenetv2_035_4x", "mobilenetv2_035", 4, "blocks+head", _mobilenetv2, "classifier.1.weight", None,
     "od_mobilenetv2(width_mult=0.35, kernel_num=4)"),
]

for arch, backbone, k, policy, place, classifier, top1, builder in _ARCHS:
    register_pair(Pair("odconv", arch, backbone, "odconv", {**_ODCONV, "num_kernels": k, "policy": policy}, place,
                       TRANSFORM, classifier, PaperResult(top1, README) if top1 is not None else None, builder))


# -- test fixtures (scripts/make_release_fixtures.py finds them through this module's entry point) ---------------
FIXTURE_CASES = [("mobilenetv2_050_1x", 10, 64, None),
                 ("mobilenetv2_050_4x", 10, 32, ["features.1", "features.2", "features.3"]),
                 ("resnet18_1x", 10, 32, ["layer1.0", "layer2.0"]),
                 ("resnet18_4x", 10, 32, ["layer1.0"])]


def fixture_builders(get):  # noqa: ANN001, ANN201
    """arch -> f(num_classes) building the release's own model; `get(module, name)` imports from the checkout."""
    r18, r50 = get("models.od_resnet", "od_resnet18"), get("models.od_resnet", "od_resnet50")
    mnv2 = get("models.od_mobilenetv2", "od_mobilenetv2")
    out = {f"resnet{d}_{k}x": (lambda n, f=f, k=k: f(num_classes=n, kernel_num=k))
           for d, f in (("18", r18), ("50", r50)) for k in (1, 4)}
    for w, mult in (("100", 1.0), ("050", 0.5), ("035", 0.35)):
        for k in (1, 4):
            out[f"mobilenetv2_{w}_{k}x"] = lambda n, m=mult, k=k: mnv2(num_classes=n, width_mult=m, kernel_num=k)
    del out["mobilenetv2_035_1x"]
    return out
