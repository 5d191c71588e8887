"""One accepted config key of a variant or a measurement kind: type, default, range or choices (no torch here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One accepted config key: its type, default, and optional range or choices."""

    default: Any
    help: str = ""
    type: type | tuple[type, ...] | None = None  # inferred from the default when None
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None

    def check(self, key: str, value: Any, variant: str) -> Any:
        """Return `value` coerced to this parameter's type, or raise ConfigError."""
        expected = self.type or type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if callable(value) and not isinstance(value, str) and key == "policy":
            return value
        if isinstance(value, bool) and expected is not bool and expected != (bool,):
            raise ConfigError(f"{variant}: {key}={value!r} must be {_type_name(expected)}, not bool")
        if not isinstance(value, expected):
            raise ConfigError(
                f"{variant}: {key}={value!r} must be {_type_name(expected)}, not {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{variant}: {key}={value!r} must be a finite number")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{variant}: {key}={value!r} is not valid; valid: {', '.join(map(str, self.choices))}")
        if value is None:  # an optional key left at "default"
            return value
        if self.min is not None and value < self.min:
            raise ConfigError(f"{variant}: {key}={value!r} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{variant}: {key}={value!r} is above the maximum {self.max}")
        return value

    def describe(self) -> dict[str, Any]:
        """Type, default, range or choices, and help text (JSON-able)."""
        out: dict[str, Any] = {"type": _type_name(self.type or type(self.default)), "default": self.default}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        out["help"] = self.help
        return out


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return "None" if t is type(None) else t.__name__
