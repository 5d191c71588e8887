"""Key layouts shared by several releases: torchvision's MobileNetV2 `features.*` -> timm's `blocks.*`."""

from __future__ import annotations

import re

# blocks per stage of MobileNetV2 (t, c, n, s table): features.1 .. features.17
_STAGES = (1, 2, 3, 4, 3, 3, 1)
_BLOCK = [(s, i) for s, n in enumerate(_STAGES) for i in range(n)]  # features index - 1 -> (stage, index)
_FIRST = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}  # t = 1: dw, pw
_OTHER = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
          "conv.2": "conv_pwl", "conv.3": "bn3"}
_FEATURE = re.compile(r"features\.(\d+)\.(.+)$")


def mobilenetv2_block(index: int) -> str:
    """timm's name of torchvision's `features.<index>` inverted-residual block (index 1..17)."""
    stage, i = _BLOCK[index - 1]
    return f"blocks.{stage}.{i}"


def mobilenetv2_key(key: str, classifier: str = "classifier.1") -> str | None:
    """timm's key for a torchvision-layout MobileNetV2 key (None when the key is not in that layout).

    The release's sub-module of a conv (ODConv's `.attention.*`, ...) is carried over unchanged.
    """
    if key.startswith(classifier + "."):
        return "classifier." + key[len(classifier) + 1:]
    m = _FEATURE.match(key)
    if m is None:
        return None
    index, rest = int(m.group(1)), m.group(2)
    if index == 0:
        table, prefix = {"0": "conv_stem", "1": "bn1"}, ""
    elif index == len(_BLOCK) + 1:
        table, prefix = {"0": "conv_head", "1": "bn2"}, ""
    elif 1 <= index <= len(_BLOCK):
        table, prefix = (_FIRST if index == 1 else _OTHER), mobilenetv2_block(index) + "."
    else:
        return None
    for old in sorted(table, key=len, reverse=True):  # "conv.1.0" before "conv.1"
        if rest.startswith(old + "."):
            return prefix + table[old] + rest[len(old):]
    return None
