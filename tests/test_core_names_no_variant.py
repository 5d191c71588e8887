"""The core names no variant: what a method needs (layers, recipes, schedules) lives with the method in variants/.

Checked against every registered variant (plugins count too): no module of dynconv_bench/ names a variant, its
Variant class or the class of any module its conversion puts into a model, in code, strings or comments.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import dynconv_bench
from dynconv_bench.data import get_dataset
from dynconv_bench.measures.accuracy import temperature_note
from dynconv_bench.training import RECIPES, train_and_evaluate

CORE = Path(dynconv_bench.__file__).parent
# "static" is the identity baseline: create_model's default variant (DESIGN.md), and an English word
EXEMPT = {"static", "Static"}
FOREIGN = ("torch.", "timm.", "builtins")


def _layer_classes(variant: type[dynconv_bench.Variant]) -> set[str]:
    """Classes of the modules the variant puts into a model, and the nn.Module classes its module defines."""
    model = dynconv_bench.create_model("cifar_resnet20", variant.name, num_classes=10)
    converted = [model.get_submodule(n) for n in model.dynconv_report.converted]
    names = {type(m).__name__ for layer in converted for m in layer.modules()
             if not type(m).__module__.startswith(FOREIGN)}
    module = inspect.getmodule(variant)
    names |= {obj.__name__ for obj in vars(module).values()
              if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__}
    return names


def _needles() -> dict[str, str]:
    """Every name the core must not use -> the variant it belongs to."""
    out: dict[str, str] = {}
    for name in dynconv_bench.list_variants():
        cls = dynconv_bench.get_variant(name)
        for needle in {name, cls.__name__} | _layer_classes(cls):
            out.setdefault(needle, name)
    return {k: v for k, v in out.items() if k not in EXEMPT}


def _hits(needles: dict[str, str]) -> list[str]:
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, sorted(needles, key=len, reverse=True)))
                         + r")(?![A-Za-z0-9_])", re.I)
    lowered = {k.lower(): v for k, v in needles.items()}
    hits = []
    for path in sorted(CORE.rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                hits.append(f"{path.relative_to(CORE.parent)}:{i}: {m.group(1)!r} ({lowered[m.group(1).lower()]})")
    return hits


def test_no_core_module_names_a_registered_variant_or_its_layers() -> None:
    needles = _needles()
    assert {"odconv", "ODConv2d", "SEConv", "ChannelSE", "KWConv2d", "static-se"} <= set(needles)  # it sees them
    assert _hits(needles) == []


def test_the_guard_sees_a_plugin_and_a_core_mention(tmp_path: Path) -> None:
    plugin = tmp_path / "wobbly.py"
    plugin.write_text(
        "from torch import nn\n"
        "import dynconv_bench\n\n"
        "class WobblyConv(dynconv_bench.DynamicLayer, nn.Module):\n"
        "    def __init__(self, conv):\n"
        "        super().__init__()\n"
        "        self.conv = conv\n\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n\n"
        "@dynconv_bench.register_variant\n"
        "class Wobbly(dynconv_bench.Variant):\n"
        "    name = 'wobbly'\n"
        "    params = {'policy': dynconv_bench.Param('blocks', type=str)}\n\n"
        "    def convert_conv(self, site):\n"
        "        return WobblyConv(site.conv)\n"
    )
    dynconv_bench.load_plugin_file(plugin)
    needles = _needles()
    assert needles["WobblyConv"] == needles["Wobbly"] == "wobbly"
    assert _hits({"loop": "x"})  # the scan finds a name the core does use (training_strategy's comment)


# -- what moved out of the core still works: recipes from the variants, schedules from the records ----------
def test_variant_recipes_are_named_recipes() -> None:
    owners = {r: v for v in dynconv_bench.list_variants() for r in dynconv_bench.get_variant(v).recipes}
    for recipe, variant in owners.items():
        assert RECIPES[recipe].name == recipe and recipe.startswith(variant + "-")
    if "odconv" in owners.values():
        assert RECIPES["odconv-resnet"].milestones == (30, 60, 90)


@pytest.mark.parametrize(("variant", "described"), [("dyconv", "30 -> 1 over 10 epochs (>= 200 iterations)"),
                                                     ("kernelwarehouse", "1 -> 0 over 20 epochs (>= 200 iterations)")])
def test_training_records_the_schedule_the_report_reads(variant: str, described: str) -> None:
    if variant not in dynconv_bench.list_variants():
        pytest.skip(f"{variant} not registered")
    import pandas as pd

    kw = {"num_samples": 16, "num_classes": 4, "image_size": 8}
    data = (get_dataset("synthetic", "train", **kw), get_dataset("synthetic", "test", **kw))
    torch.manual_seed(0)
    model = dynconv_bench.create_model("cifar_resnet8", variant, num_classes=4)
    r = train_and_evaluate(model, data, "synthetic-quick", epochs=1, batch_size=8, eval_batch_size=16)
    assert r["status"] == "ok" and r["temperature_schedules"] == [described]
    ends = r["final_temperatures"]
    assert len(ends) == 1
    df = pd.DataFrame([("accuracy", "ok", variant, {}, r)], columns=["kind", "status", "variant", "config", "values"])
    assert temperature_note(df) == (f"Temperature schedules (accuracy runs): {variant} {described}, "
                                    f"at {ends[0]:.3g} when training ended.")
