"""`key=value` config text as the command lines take it (`dynconv-bench model ... num_kernels=4`,
`python -m dynconv_bench.training ... --set lr=0.05`): below every floor, so any entry point may parse it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .errors import UserError


def parse_value(text: str) -> object:
    """Parse a `key=value` value: JSON when it parses (numbers, bools, lists), else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_config(pairs: Sequence[str]) -> dict[str, object]:
    """`["num_kernels=4", ...]` -> {"num_kernels": 4, ...}; a pair without `=` or a key, or a key given twice, is a
    UserError."""
    cfg: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"config {pair!r} must be key=value (e.g. num_kernels=4)")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"config {pair!r} has no key before '=' (e.g. num_kernels=4)")
        if key in cfg:
            raise UserError(f"config key {key!r} is given twice ({cfg[key]!r} and {value.strip()!r}); give it once")
        cfg[key] = parse_value(value.strip())
    return cfg
