"""Backbones: the listed timm models plus a small CIFAR-style ResNet registered with timm."""

from __future__ import annotations

import functools
from typing import Any

import timm
import torch
from timm.models import register_model
from timm.models.resnet import BasicBlock
from torch import nn

# The backbones every variant is tested on; any other timm CNN works too.
STANDARD_BACKBONES = ["cifar_resnet20", "resnet18", "resnet50", "mobilenetv2_100", "mobilenetv2_050",
                      "efficientnet_b0"]


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (He et al. 2016, section 4.2): 3x3 stem, three stages, no max-pool."""

    def __init__(self, depth: int = 20, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 in_chans: int = 3, **_: object) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        inplanes = widths[0]
        for i, width in enumerate(widths):
            layers = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                downsample = None
                if stride != 1 or inplanes != width:
                    downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(width))
                layers.append(BasicBlock(inplanes, width, stride=stride, downsample=downsample))
                inplanes = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.forward_features(x)).flatten(1)
        return self.fc(x)


def _cfg(**kw: object) -> dict:
    return {"input_size": (3, 32, 32), "num_classes": 10, "mean": (0.4914, 0.4822, 0.4465),
            "std": (0.2470, 0.2435, 0.2616), **kw}


default_cfgs = {"cifar_resnet20": _cfg(), "cifar_resnet8": _cfg()}  # read by timm's register_model


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-20 for 32x32 inputs: 0.27M parameters with 10 classes."""
    model = CifarResNet(depth=20, **kwargs)
    model.pretrained_cfg = _cfg()
    return model


@register_model
def cifar_resnet8(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-8 for 32x32 inputs: the smallest of the family, for quick tests."""
    model = CifarResNet(depth=8, **kwargs)
    model.pretrained_cfg = _cfg()
    return model


def list_backbones(all_timm: bool = False) -> list[str]:
    """The standard backbones and registered architectures (or every timm model name)."""
    from .registry import architecture_modules, load_architectures

    load_architectures()
    if all_timm:
        return timm.list_models()
    extra = [name for module in architecture_modules() for name in timm.list_models(module=module)]
    return list(dict.fromkeys(STANDARD_BACKBONES + sorted(extra)))


def check_backbone(backbone: str) -> None:
    """A UserError naming the closest backbones unless `backbone` is a timm model or registered architecture."""
    from ..errors import UserError, unknown_choice
    from .registry import load_architectures

    load_architectures()
    if not timm.is_model(backbone):
        err = unknown_choice("backbone", backbone, list_backbones())
        raise UserError(f"{err} (or any name from timm.list_models())")


@functools.lru_cache(maxsize=1024)  # timm deep-copies its config on each call: once per backbone
def _pretrained_cfg(backbone: str) -> Any:
    check_backbone(backbone)  # a mistyped name is an error, never another backbone's defaults (not cached)
    return timm.models.get_pretrained_cfg(backbone)


def default_num_classes(backbone: str) -> int:
    """The class count a backbone was designed for: its timm config's, else 10 for the CIFAR-style nets and 1000
    for the others; an unknown name is a UserError naming the closest ones."""
    cfg = _pretrained_cfg(backbone)
    if cfg is not None and cfg.num_classes:
        return int(cfg.num_classes)
    return 10 if backbone.startswith("cifar_") else 1000


def default_input_size(backbone: str) -> tuple[int, int, int]:
    """The input size a backbone was designed for: its timm config's, else 32x32 for the CIFAR-style nets and
    224x224 for the others; an unknown name is a UserError naming the closest ones."""
    cfg = _pretrained_cfg(backbone)
    if cfg is not None and cfg.input_size:
        return tuple(cfg.input_size)  # type: ignore[return-value]
    return (3, 32, 32) if backbone.startswith("cifar_") else (3, 224, 224)
