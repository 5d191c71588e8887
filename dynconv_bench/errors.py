"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """A mistake in what the user asked for (unknown name, bad config, missing path)."""


class ConfigError(UserError):
    """A variant or suite configuration key or value that is not accepted."""


def did_you_mean(value: object, valid: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest valid name, or "" when none is close."""
    close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(kind: str, value: object, valid: Iterable[str]) -> UserError:
    """Build the error for an unknown name, suggesting the closest valid one."""
    valid = sorted(valid)
    return UserError(f"unknown {kind} {value!r}{did_you_mean(value, valid)}; valid: {', '.join(valid)}")
