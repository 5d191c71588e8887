"""Find the Conv2d layers of a model, classify them (stem, block, shortcut, head, attention) and
group them by stage; policies choose which of them a variant converts."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import unknown_choice
from .conv_spec import ConvSpec

# Residual / inverted-residual block classes of timm and torchvision, matched by class name so
# that any model built from such blocks is understood without importing its module.
BLOCK_CLASS_PATTERN = re.compile(
    r"(BasicBlock|Bottleneck|BottleneckBlock|InvertedResidual|DepthwiseSeparableConv|EdgeResidual|"
    r"CondConvResidual|UniversalInvertedResidual|ResidualBlock|DarkBlock|RepVggBlock|ConvNeXtBlock)$"
)
# Attention modules of timm, by class name; any other module says so with a class attribute conv_role = "attention"
ATTENTION_CLASS_PATTERN = re.compile(r"(SqueezeExcite|SEModule|EffectiveSEModule|EcaModule|CbamModule|"
                                     r"ChannelAttn|SpatialAttn|GatherExcite|SelectiveKernel)", re.I)
SHORTCUT_SEGMENTS = {"downsample", "shortcut", "skip", "conv_shortcut"}


@dataclass(frozen=True)
class ConvSite:
    """One Conv2d of a model: where it is, what role it plays, and its shape."""

    name: str
    conv: nn.Conv2d = field(repr=False, compare=False)
    role: str
    stage: str
    block: str = ""
    index: int = 0

    @property
    def geometry(self) -> ConvSpec:
        return ConvSpec.from_conv(self.conv)

    in_channels = property(lambda self: self.conv.in_channels)
    out_channels = property(lambda self: self.conv.out_channels)
    kernel_size = property(lambda self: self.geometry.kernel_size)
    stride = property(lambda self: self.geometry.stride)
    groups = property(lambda self: self.conv.groups)

    @property
    def is_depthwise(self) -> bool:
        return self.conv.groups == self.conv.in_channels and self.conv.groups > 1

    @property
    def sharing_key(self) -> tuple:
        """Layers with the same key can share one weight tensor."""
        return (self.geometry, self.conv.bias is not None)


def _is_block(module: nn.Module) -> bool:
    return bool(BLOCK_CLASS_PATTERN.search(type(module).__name__))


def find_conv_sites(model: nn.Module) -> list[ConvSite]:
    """All Conv2d layers of `model` in registration order, each with its role and stage."""
    modules = dict(model.named_modules())
    convs = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv2d) and n]
    info = []
    any_block = False
    for name, conv in convs:
        parts = name.split(".")
        block = ""
        attention = False
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            mod = modules.get(prefix)
            if mod is None:
                continue
            if not block and (ATTENTION_CLASS_PATTERN.search(type(mod).__name__)
                              or getattr(mod, "conv_role", None) == "attention"):
                attention = True
            if _is_block(mod):
                block = prefix  # keep going up: the outermost block wins
        any_block = any_block or bool(block)
        info.append((name, conv, block, attention))

    if not any_block:
        return _fallback_sites(convs)

    first_block = next(i for i, x in enumerate(info) if x[2])
    last_block = max(i for i, x in enumerate(info) if x[2])
    sites = []
    for idx, (name, conv, block, attention) in enumerate(info):
        if block:
            rel = name[len(block) + 1:].split(".")
            if attention:
                role = "attention"
            elif SHORTCUT_SEGMENTS & set(rel[:-1]) or rel[0] in SHORTCUT_SEGMENTS:
                role = "shortcut"
            else:
                role = "block"
            stage = block.rsplit(".", 1)[0] if "." in block else block
        elif idx < first_block:
            role, stage = "stem", "stem"
        elif idx > last_block:
            role, stage = "head", "head"
        else:  # a conv between blocks that belongs to none of them (e.g. a transition)
            role, stage = "block", name.rsplit(".", 1)[0] if "." in name else name
        sites.append(ConvSite(name, conv, role, stage, block, idx))
    return sites


def _fallback_sites(convs: list[tuple[str, nn.Conv2d]]) -> list[ConvSite]:
    """For a plain module tree: the first conv is the stem, the others are the body."""
    sites = []
    for idx, (name, conv) in enumerate(convs):
        if idx == 0:
            sites.append(ConvSite(name, conv, "stem", "stem", "", idx))
        else:
            stage = name.rsplit(".", 1)[0] if "." in name else ""
            sites.append(ConvSite(name, conv, "block", stage, "", idx))
    return sites


# -- policies ----------------------------------------------------------------------------------
PolicyFn = Callable[[ConvSite, list[ConvSite]], bool]


def _last_stages(n: int) -> PolicyFn:
    def select(site: ConvSite, sites: list[ConvSite]) -> bool:
        stages = list(dict.fromkeys(s.stage for s in sites if s.role == "block"))
        return site.role == "block" and site.stage in stages[-n:]
    return select


POLICIES: dict[str, tuple[PolicyFn, str]] = {
    "all": (lambda s, _: True, "every Conv2d"),
    "no-stem": (lambda s, _: s.role not in ("stem", "attention"), "every conv except the stem and attention convs"),
    "blocks": (lambda s, _: s.role == "block", "convs inside residual/inverted-residual blocks, no shortcut"),
    "blocks+head": (lambda s, _: s.role in ("block", "head"), "block convs and the head conv after the last block"),
    "blocks-kxk": (lambda s, _: s.role == "block" and max(s.kernel_size) > 1, "block convs with kernels larger than 1x1"),
    "last-3-stages": (_last_stages(3), "block convs of the last three stages"),
}


def select_sites(sites: list[ConvSite], policy: str | Callable[[ConvSite], bool]) -> list[ConvSite]:
    """The sites a policy selects: a policy name, 're:<regex>' on layer names, or a callable."""
    if callable(policy):
        return [s for s in sites if policy(s)]
    if policy.startswith("re:"):
        pattern = re.compile(policy[3:])
        return [s for s in sites if pattern.search(s.name)]
    if policy not in POLICIES:
        raise unknown_choice("policy", policy, list(POLICIES) + ["re:<regex>"])
    fn = POLICIES[policy][0]
    return [s for s in sites if fn(s, sites)]


def validate_policy(policy: object) -> None:
    """Raise a UserError for a policy that names nothing known."""
    if callable(policy):
        return
    if not isinstance(policy, str):
        raise unknown_choice("policy", policy, list(POLICIES) + ["re:<regex>"])
    if policy.startswith("re:"):
        try:
            re.compile(policy[3:])
        except re.error as exc:
            from ..errors import UserError
            raise UserError(f"policy {policy!r} is not a valid regular expression: {exc}") from None
        return
    if policy not in POLICIES:
        raise unknown_choice("policy", policy, list(POLICIES) + ["re:<regex>"])
