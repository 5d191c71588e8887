"""Small validators the suite parsers share: each raises a one-line UserError naming the suite file and key."""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any

from ..errors import UserError, did_you_mean, unknown_choice
from ..files import show_path

MAX_NAME = 64  # characters of a suite name or variant label (they name figure files)


def check_keys(table: dict[str, Any], valid: tuple[str, ...] | list[str], source: str, prefix: str) -> None:
    """Every key of `table` is one of `valid` (else the closest valid one is suggested)."""
    for key in table:
        if key not in valid:
            raise UserError(f"{source}: unknown key '{prefix}{key}'{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


def check_type(value: Any, expected: type | tuple[type, ...], source: str, key: str) -> None:
    """`value` is of the expected type (a bool is not an int here)."""
    if not isinstance(value, expected) or (isinstance(value, bool) and expected in (int, (int, float))):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise UserError(f"{source}: {key} = {value!r} must be {names}")


def str_list(value: Any, source: str, key: str, required: bool = False) -> list[str]:
    """A non-empty list of strings (one string is a list of one); [] for a missing optional key."""
    if value is None and not required:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{source}: {key} must be a non-empty list of names")
    return value


def check_unique(values: list[Any], source: str, key: str) -> None:
    """No value occurs twice."""
    dupes = duplicates(values)
    if dupes:
        raise UserError(f"{source}: {key}: duplicate value(s) {', '.join(dupes)}")


def duplicates(values: list[Any], shown: int = 10) -> list[str]:
    """The values that occur more than once (the first `shown`, as text); linear, for suites of millions of entries."""
    counts = Counter(values)
    dupes = sorted(str(v) for v, n in counts.items() if n > 1)
    return dupes[:shown] + ([f"... ({len(dupes) - shown} more)"] if len(dupes) > shown else [])


def check_name(name: str, source: str, key: str) -> None:
    """Suite names and variant labels name figure files: printable, and short enough for any file system."""
    if not name.strip() or len(name) > MAX_NAME or any(unicodedata.category(c) == "Cc" for c in name):
        raise UserError(f"{source}: {key} = '{show_path(name)}' must be 1 to {MAX_NAME} characters without control "
                        f"characters (it names figure files and table rows)")


def check_backbone(name: str, source: str, key: str) -> None:
    """A timm model name or a registered architecture."""
    import timm

    from ..models.backbones import list_backbones
    from ..models.registry import load_architectures

    load_architectures()
    if not timm.is_model(name):
        raise UserError(f"{source}: {key}: {unknown_choice('backbone', name, list_backbones())}")
