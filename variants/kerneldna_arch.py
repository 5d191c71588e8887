"""The KernelDNA paper's ImageNet architectures, registered with timm.

Built as the official release (github.com/haiduo/KernelDNA, models/KDNA_*.py) builds them, on
timm's ResNet and MobileNetV2 (same parameters as the torchvision models the release uses):

- kerneldna_resnet18: layer3 and layer4 each become three basic blocks over six 3x3 convs,
  conv1 (stride 2) -> child of conv2 | child of conv2 -> conv2 | child of conv3 -> conv3,
  with the original downsample shortcut on the first pair; children use spatial + filter
  modulation and SE (ratio 4) on their input.
- kerneldna_resnet50: only 3x3 convs are shared. layer3 = stride-2 bottleneck, then three
  (child block, parent block) pairs, each child borrowing its parent's 3x3 kernel; layer4 =
  stride-2 bottleneck, one child block, the parent block. SE (ratio 4) after the child's first 1x1.
- kerneldna_mobilenetv2_100 / _050: the 32/64/96/160-channel stages (16/32/48/80 at 0.5x) become
  a transition block, 1/2/1/1 child blocks and the parent block; children share the parent's two
  pointwise kernels (filter modulation only), keep their own depthwise conv and norms, and have SE
  on the input of each shared conv (ratios 4 and 24).
"""

from __future__ import annotations

from typing import Any

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from dynconv_bench.errors import UserError

from .kerneldna import KernelDNAConv

__all__: list[str] = []

_FACTORY_KEYS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _cfg(first_conv: str, classifier: str) -> dict[str, Any]:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
            "interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": first_conv, "classifier": classifier}


default_cfgs = {
    "kerneldna_resnet18": _cfg("conv1", "fc"),
    "kerneldna_resnet50": _cfg("conv1", "fc"),
    "kerneldna_mobilenetv2_100": _cfg("conv_stem", "classifier"),
    "kerneldna_mobilenetv2_050": _cfg("conv_stem", "classifier"),
}


def _init_new(module: nn.Module) -> None:
    """Initialise freshly built layers as the release does (He normal, fan-out; BN to identity)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _child(parent: nn.Conv2d, spatial: bool, reduction: int) -> KernelDNAConv:
    child = KernelDNAConv(parent, spatial=spatial, filter=True, se=True, reduction=reduction)
    _init_new(child.se)
    return child


def _base(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    if pretrained:
        raise UserError(f"no pretrained weights exist for kerneldna_{name}: this suite never downloads weights")
    for key in _FACTORY_KEYS:
        kwargs.pop(key, None)
    return timm.create_model(name, pretrained=False, **kwargs)


def _finish(model: nn.Module, arch: str) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(arch)
    model.pretrained_cfg = cfg.to_dict() if cfg is not None else default_cfgs[arch]
    model.default_cfg = model.pretrained_cfg
    return model


def _resnet18_stage(old: nn.Sequential) -> nn.Sequential:
    """Six 3x3 convs in three residual pairs: conv1, child(conv2) | child(conv2), conv2 | child(conv3), conv3."""
    first = old[0]
    inplanes, planes = first.conv1.in_channels, first.conv1.out_channels
    b1 = BasicBlock(inplanes, planes, stride=first.conv1.stride[0], downsample=first.downsample)
    b2 = BasicBlock(planes, planes)
    b3 = BasicBlock(planes, planes)
    for b in (b1, b2, b3):
        _init_new(b.conv1)
        _init_new(b.conv2)
    # b2.conv2 and b3.conv2 are the parents ("conv2", "conv3" of the release).
    b1.conv2 = _child(b2.conv2, spatial=True, reduction=4)
    b2.conv1 = _child(b2.conv2, spatial=True, reduction=4)
    b3.conv1 = _child(b3.conv2, spatial=True, reduction=4)
    return nn.Sequential(b1, b2, b3)


def _resnet50_stage(old: nn.Sequential, pairs: int, trailing_parent: bool) -> nn.Sequential:
    """Stride-2 bottleneck, then child blocks borrowing the 3x3 kernel of their parent blocks."""
    first = old[0]
    planes = first.conv1.out_channels
    width = planes * Bottleneck.expansion
    blocks: list[nn.Module] = [first]

    def pair() -> tuple[Bottleneck, Bottleneck]:
        kid, parent = Bottleneck(width, planes), Bottleneck(width, planes)
        _init_new(kid)
        _init_new(parent)
        kid.conv2 = _child(parent.conv2, spatial=True, reduction=4)
        return kid, parent

    if trailing_parent:  # layer4: every child block borrows from the one last block
        kids, last = [], Bottleneck(width, planes)
        _init_new(last)
        for _ in range(pairs):
            kid = Bottleneck(width, planes)
            _init_new(kid)
            kid.conv2 = _child(last.conv2, spatial=True, reduction=4)
            kids.append(kid)
        blocks += [*kids, last]
    else:  # layer3: (child, parent) pairs
        for _ in range(pairs):
            blocks += list(pair())
    return nn.Sequential(*blocks)


def _mobilenetv2_stage(old: nn.Sequential) -> nn.Sequential:
    """Transition block, child blocks sharing the last block's two pointwise kernels, the last block."""
    first, middle, last = old[0], list(old[1:-1]), old[-1]
    for blk in middle:
        blk.conv_pw = _child(last.conv_pw, spatial=False, reduction=4)
        blk.conv_pwl = _child(last.conv_pwl, spatial=False, reduction=24)
    return nn.Sequential(first, *middle, last)


@register_model
def kerneldna_resnet18(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KernelDNA ResNet-18: 9,240,798 parameters with 1000 classes (official release's count)."""
    model = _base("resnet18", pretrained, {"zero_init_last": False, **kwargs})
    model.layer3 = _resnet18_stage(model.layer3)
    model.layer4 = _resnet18_stage(model.layer4)
    return _finish(model, "kerneldna_resnet18")


@register_model
def kerneldna_resnet50(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KernelDNA ResNet-50: 22,778,060 parameters with 1000 classes (official release's count)."""
    model = _base("resnet50", pretrained, {"zero_init_last": False, **kwargs})
    model.layer3 = _resnet50_stage(model.layer3, pairs=3, trailing_parent=False)
    model.layer4 = _resnet50_stage(model.layer4, pairs=1, trailing_parent=True)
    return _finish(model, "kerneldna_resnet50")


def _mobilenetv2(base: str, arch: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    model = _base(base, pretrained, kwargs)
    for i in (2, 3, 4, 5):  # the 32/64/96/160-channel stages (x0.5: 16/32/48/80)
        model.blocks[i] = _mobilenetv2_stage(model.blocks[i])
    return _finish(model, arch)


@register_model
def kerneldna_mobilenetv2_100(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KernelDNA MobileNetV2 1.0x: 3,136,840 parameters with 1000 classes (official release's count)."""
    return _mobilenetv2("mobilenetv2_100", "kerneldna_mobilenetv2_100", pretrained, kwargs)


@register_model
def kerneldna_mobilenetv2_050(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KernelDNA MobileNetV2 0.5x: 1,878,232 parameters with 1000 classes (official release's count)."""
    return _mobilenetv2("mobilenetv2_050", "kerneldna_mobilenetv2_050", pretrained, kwargs)
