"""Validate one [measure.KIND] table of a suite: the kind's options, the lists that expand to one cell each, the
input size, and an accuracy table's recipe overrides (RECIPE_OVERRIDES, checked at load, not inside a cell)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError, unknown_choice
from ..files import show_path
from ..measures import check_options
from ..measures import options as measure_options
from ..measures.options import MODES
from .suite_checks import check_backbone, check_unique, str_list


def parse_measure(kind: str, opts: Any, source: str) -> dict[str, Any]:
    """One [measure.KIND] table checked: its kind's options, backbones, option lists, input size and overrides."""
    where = f"measure.{kind}"
    if not isinstance(opts, dict):
        raise UserError(f"{source}: [{where}] must be a table")
    try:
        out = check_options(kind, opts, where)  # types, ranges, choices and the kind's own checks
    except UserError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    if out["backbones"] is not None:
        out["backbones"] = str_list(out["backbones"], source, f"{where}.backbones")
        check_unique(out["backbones"], source, f"{where}.backbones")
        for b in out["backbones"]:
            check_backbone(b, source, f"{where}.backbones")
    for key in ("batch_sizes", "seeds"):
        if key in out:
            vals = out[key]
            if not isinstance(vals, list) or not vals or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in vals):
                raise UserError(f"{source}: {where}.{key} must be a non-empty list of integers")
            low, high = (1, measure_options.MAX_BATCH) if key == "batch_sizes" else (0, measure_options.MAX_SEED)
            if not all(low <= v <= high for v in vals):
                raise UserError(f"{source}: {where}.{key} must be integers in [{low}, {high}]")
            check_unique(vals, source, f"{where}.{key}")
    if out.get("input_size") is not None:
        size = out["input_size"]
        if isinstance(size, int) and not isinstance(size, bool):
            size = [3, size, size]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                  and v > 0 for v in size)):
            raise UserError(f"{source}: {where}.input_size must be an integer or [channels, height, width]")
        channels, side = measure_options.MAX_CHANNELS, measure_options.MAX_SIDE
        if size[0] > channels or max(size[1:]) > side:
            raise UserError(f"{source}: {where}.input_size {size} is too large: at most {channels} channels and "
                            f"{side} pixels a side")
        out["input_size"] = size
    if "modes" in out:
        out["modes"] = str_list(out["modes"], source, f"{where}.modes")
        for m in out["modes"]:
            if m not in MODES:
                raise UserError(f"{source}: {where}.modes: {unknown_choice('mode', m, MODES)}")
    if kind == "accuracy" and out.get("datasets") and out.get("checkpoint") is None:
        _check_recipe_overrides(out, source, where)
    return out


def _int_in(low: int, high: int) -> tuple[str, Any]:
    return (f"an integer in [{low}, {high}]",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high)


def _number_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> tuple[str, Any]:
    text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def ok(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return text, ok


def _choice(*names: str) -> tuple[str, Any]:
    return f"one of {', '.join(names)}", lambda v: isinstance(v, str) and v in names


_BOOL = ("true or false", lambda v: isinstance(v, bool))
_TEXT = ("a string", lambda v: isinstance(v, str))
# Every recipe field an accuracy table's `overrides` may set: what it must be (training/recipes.py's Recipe; the
# ranges are those a run can train with, so that a value passing --dry-run cannot fail inside the cell).
RECIPE_OVERRIDES: dict[str, tuple[str, Any]] = {
    "epochs": _int_in(1, 10_000),
    "batch_size": _int_in(1, measure_options.MAX_BATCH),
    "lr": _number_in(0, 100, low_open=True),
    "momentum": _number_in(0, 1),
    "nesterov": _BOOL,
    "weight_decay": _number_in(0, 1),
    "schedule": _choice("cosine", "step"),
    "warmup_epochs": _number_in(0, 10_000),
    "warmup_start_factor": _number_in(0, 1),
    "min_lr": _number_in(0, 100),
    "milestones": ("a list of increasing epochs, integers in [1, 10000]",
                   lambda v: isinstance(v, list) and all(_int_in(1, 10_000)[1](m) for m in v)
                   and all(a < b for a, b in zip(v, v[1:]))),
    "gamma": _number_in(0, 1, low_open=True),
    "label_smoothing": _number_in(0, 1, high_open=True),
    "amp": _BOOL,
    "grad_clip": _number_in(0, 1e6, low_open=True),
    "image_size": _int_in(1, measure_options.MAX_SIDE),
    "eval_batch_size": _int_in(1, measure_options.MAX_BATCH),
    "eval_every": _int_in(1, 10_000),
    "workers": _int_in(0, 256),
    "bn_recalibration_batches": _int_in(0, 1_000_000),
    "divergence_factor": _number_in(1, 1e6, low_open=True),
    "dataset": _TEXT,
    "source": _TEXT,
    "notes": _TEXT,
}


def _check_recipe_overrides(out: dict[str, Any], source: str, where: str) -> None:
    """Each recipe override of the right type and in range (one line naming the key and what is valid), and the
    global batch of every recipe the table trains with divisible by its `gpus` (each worker gets batch / gpus)."""
    from ..training.recipes import RECIPES, default_recipe

    overrides = out.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{source}: {where}.overrides must be a table of recipe settings, e.g. {{image_size = 8}}")
    for key, value in overrides.items():
        rule = RECIPE_OVERRIDES.get(key)
        if rule is not None and not rule[1](value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise UserError(f"{source}: {where}.overrides.{key} = {show_path(shown)} is not valid: {key} must be "
                            f"{rule[0]}")
    gpus = out.get("gpus") or 1
    if not isinstance(gpus, int) or gpus <= 1:
        return
    try:
        names = [out["recipe"]] if out.get("recipe") else [default_recipe(d) for d in out["datasets"]]
        recipes = {n: RECIPES[n] for n in names}
    except (KeyError, UserError):
        return  # the kind's own check names an unknown recipe
    for name, recipe in recipes.items():
        batch = overrides.get("batch_size", recipe.batch_size)
        if batch % gpus:
            raise UserError(f"{source}: {where}: gpus = {gpus} must divide the batch size {batch} (recipe {name}"
                            f"{', overrides.batch_size' if 'batch_size' in overrides else ''}): each of the gpus "
                            f"workers trains batch_size / gpus images per step")

