"""KernelDNA official release (github.com/haiduo/KernelDNA): its ResNet-18 and MobileNetV2 1.0x / 0.5x.

ResNet-18 (models/KDNA_ResNet18.py): layer3 and layer4 are one `NewLayer` each, holding conv1/bn1/downsample,
the two parents conv2/bn2 and conv3/bn3, and per child i (3 of them) static_spatial_attn[i],
static_filter_attn[i], se[i] and bns[i]. Ours (kerneldna_resnet18) is three timm BasicBlocks per stage:
child 0 = <layer>.0.conv2, child 1 = <layer>.1.conv1 (of parent <layer>.1.conv2 = conv2),
child 2 = <layer>.2.conv1 (of parent <layer>.2.conv2 = conv3).
MobileNetV2 (models/KDNA_MobileNetV2.py): torchvision's, with a `ShareCluster` (transition, kids, last_block)
at features 6/10/13/16 in place of the 32/64/96/160-channel stages; ours is timm's blocks 2..5.
The release's README publishes neither weights nor accuracies: this imports checkpoints its main.py trains.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from dynconv_bench.models.published import EvalTransform, Pair, Placement, register_pair

from .layouts import mobilenetv2_key

TRANSFORM = EvalTransform(256, 224, "bilinear", source="KernelDNA main.py: Resize(256), CenterCrop(224), ImageNet "
                                                       "mean/std")
_SE = {"fc1": "reduce", "bn": "bn", "fc2": "expand"}

# -- ResNet-18 -------------------------------------------------------------------------------------
_NEW = re.compile(r"(layer[34])\.(.+)$")
_CHILD = ("0.conv2", "1.conv1", "2.conv1")  # ours, per child index
_CHILD_BN = ("0.bn2", "1.bn1", "2.bn1")
_PLAIN = {"conv1": "0.conv1", "bn1": "0.bn1", "downsample": "0.downsample", "conv2": "1.conv2", "bn2": "1.bn2",
          "conv3": "2.conv2", "bn3": "2.bn2"}


def _resnet18(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement | None:
    m = _NEW.match(key)
    if m is None:
        return [(key, tensor)]
    layer, rest = m.groups()
    if rest in ("static_spatial_attn", "static_filter_attn"):
        what = "spatial" if rest == "static_spatial_attn" else "filter"
        return [(f"{layer}.{child}.{what}", tensor[i]) for i, child in enumerate(_CHILD[:tensor.shape[0]])]
    se = re.match(r"se\.(\d+)\.se\.(fc1|bn|fc2)\.(.+)$", rest)
    if se is not None:
        return [(f"{layer}.{_CHILD[int(se.group(1))]}.se.{_SE[se.group(2)]}.{se.group(3)}", tensor)]
    bn = re.match(r"bns\.(\d+)\.(.+)$", rest)
    if bn is not None:
        return [(f"{layer}.{_CHILD_BN[int(bn.group(1))]}.{bn.group(2)}", tensor)]
    head, _, tail = rest.partition(".")
    if head in _PLAIN:
        return [(f"{layer}.{_PLAIN[head]}.{tail}", tensor)]
    return None


# -- MobileNetV2 -----------------------------------------------------------------------------------
_CLUSTER_STAGE = {6: 2, 10: 3, 13: 4, 16: 5}  # features index of a ShareCluster -> timm stage
_IB = {"pw1": "conv_pw", "bn1": "bn1", "dw": "conv_dw", "bn2": "bn2", "pw2": "conv_pwl", "bn3": "bn3"}
_KID = {"dwconv": "conv_dw", "bn1": "bn1", "bn2": "bn2", "bn3": "bn3"}


def _mobilenetv2(key: str, tensor: torch.Tensor, model: nn.Module) -> Placement | None:
    m = re.match(r"features\.(\d+)\.(.+)$", key)
    if m is None or int(m.group(1)) not in _CLUSTER_STAGE:
        ours = mobilenetv2_key(key)
        return None if ours is None else [(ours, tensor)]
    stage, rest = f"blocks.{_CLUSTER_STAGE[int(m.group(1))]}", m.group(2)
    last = len(model.get_submodule(stage)) - 1
    if rest.startswith("static_filter_attn"):
        conv = "conv_pw" if rest == "static_filter_attn1" else "conv_pwl"
        return [(f"{stage}.{1 + i}.{conv}.filter", tensor[i]) for i in range(tensor.shape[0])]
    part = re.match(r"(transition|last_block)\.layers\.(\w+)\.(.+)$", rest)
    if part is not None and part.group(2) in _IB:
        index = 0 if part.group(1) == "transition" else last
        return [(f"{stage}.{index}.{_IB[part.group(2)]}.{part.group(3)}", tensor)]
    kid = re.match(r"blocks\.(\d+)\.(.+)$", rest)
    if kid is not None:
        block, sub = f"{stage}.{1 + int(kid.group(1))}", kid.group(2)
        se = re.match(r"se([13])\.se\.(fc1|bn|fc2)\.(.+)$", sub)
        if se is not None:
            conv = "conv_pw" if se.group(1) == "1" else "conv_pwl"
            return [(f"{block}.{conv}.se.{_SE[se.group(2)]}.{se.group(3)}", tensor)]
        head, _, tail = sub.partition(".")
        if head in _KID:
            return [(f"{block}.{_KID[head]}.{tail}", tensor)]
    return None


register_pair(Pair("kerneldna", "resnet18", "kerneldna_resnet18", "static", {}, _resnet18, TRANSFORM, "fc.weight",
                   None, "models/KDNA_ResNet18.py get_resnet18(customize=True)"))
for width, builder in (("100", "get_mobilenet_v2"), ("050", "get_mobilenet_v2_1d2")):
    register_pair(Pair("kerneldna", f"mobilenetv2_{width}", f"kerneldna_mobilenetv2_{width}", "static", {},
                       _mobilenetv2, TRANSFORM, "classifier.1.weight", None,
                       f"models/KDNA_MobileNetV2.py {builder}(customize=True)"))


# -- test fixtures (scripts/make_release_fixtures.py finds them through this module's entry point) ---------------
FIXTURE_CASES = [("mobilenetv2_050", 10, 64, None), ("resnet18", 10, 64, ["layer3"])]


def fixture_builders(get):  # noqa: ANN001, ANN201
    """arch -> f(num_classes) building the release's own model; `get(module, name)` imports from the checkout."""
    def head(model: nn.Module, n: int) -> nn.Module:
        fc = "fc" if hasattr(model, "fc") else None
        if fc:
            model.fc = nn.Linear(model.fc.in_features, n)
        else:
            model.classifier[1] = nn.Linear(model.classifier[1].in_features, n)
        return model

    return {"resnet18": lambda n: head(get("models.KDNA_ResNet18", "get_resnet18")(True), n),
            "mobilenetv2_100": lambda n: head(get("models.KDNA_MobileNetV2", "get_mobilenet_v2")(True), n),
            "mobilenetv2_050": lambda n: head(get("models.KDNA_MobileNetV2", "get_mobilenet_v2_1d2")(True), n)}
