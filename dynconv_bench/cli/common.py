"""What every verb shares: the command table, `key=value` parsing and the results store path."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence

from ..errors import UserError

DB_ENV = "DYNCONV_BENCH_DB"
DEFAULT_DB = "dynconv_bench.sqlite"

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


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
    cfg: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"config {pair!r} must be key=value (e.g. num_kernels=4)")
        key, value = pair.split("=", 1)
        cfg[key.strip()] = parse_value(value.strip())
    return cfg


def db_path(args: argparse.Namespace) -> str:
    return getattr(args, "db", None) or os.environ.get(DB_ENV) or DEFAULT_DB


