"""What every verb shares: the command table, argument types and the results store path (`key=value` parsing:
`dynconv_bench.config_text`)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

DB_ENV = "DYNCONV_BENCH_DB"
DEFAULT_DB = "dynconv_bench.sqlite"
MAX_CLASSES = 100_000  # classifier outputs (ImageNet-21k has 21,841)
MAX_SIDE = 4096  # image side in pixels

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def db_path(args: argparse.Namespace) -> str:
    return getattr(args, "db", None) or os.environ.get(DB_ENV) or DEFAULT_DB




def check_output_file(path: str | Path, what: str = "output", example: str = "out.txt") -> Path:
    """`path` as a file this command may write (see `dynconv_bench.files.check_output_path`), before any work."""
    from ..files import check_output_path

    return check_output_path(path, what, example=example)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (argparse turns the ValueError into one line, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high}]")
        return value

    return parse


def bounded_float(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (in (low, high] with `low_open`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text} is not in {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    return parse


def check_output_dir(path: str | Path, what: str = "figures", probe: bool = True) -> Path:
    """`path` as a folder this command may write files into (created later), before any work."""
    from ..files import check_output_dir as check

    return check(path, what, probe)
