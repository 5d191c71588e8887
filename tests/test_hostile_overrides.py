"""Suite values that used to pass --dry-run and fail inside the cell (issue 35, item 4): recipe overrides of the
wrong type or out of range, and gpus that do not divide the recipe's batch, are one line at load naming the key
and what is valid."""

from __future__ import annotations

import pytest

from dynconv_bench.training.recipes import get_recipe

from .test_hostile import one_line_exit_2

BASE = 'name = "t"\nbackbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.accuracy]\n'


@pytest.mark.parametrize("line, token, valid", [
    ('overrides = {momentum = "xxx"}', "overrides.momentum", "a number in [0, 1]"),
    ("overrides = {milestones = -1}", "overrides.milestones", "a list of increasing epochs"),
    ("overrides = {milestones = [4, 2]}", "overrides.milestones", "a list of increasing epochs"),
    ("overrides = {lr = 1e308}", "overrides.lr", "a number in (0, 100]"),
    ("overrides = {amp = {}}", "overrides.amp", "true or false"),
    ('overrides = {nesterov = "yes"}', "overrides.nesterov", "true or false"),
    ("overrides = {dataset = [1]}", "overrides.dataset", "a string"),
    ("overrides = {gamma = 0}", "overrides.gamma", "a number in (0, 1]"),
    ("gpus = 3", "gpus = 3 must divide the batch size 64", "recipe digits-quick"),
    ("gpus = 4\noverrides = {batch_size = 30}", "gpus = 4 must divide the batch size 30", "overrides.batch_size"),
])
def test_bad_overrides_are_one_line_at_load(line: str, token: str, valid: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "t.toml"
    suite.write_text(BASE + line + "\n")
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys, token, valid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


@pytest.mark.parametrize("line", ["gpus = 4", "overrides = {lr = 0.05, milestones = [2, 4], nesterov = true}",
                                  "overrides = {momentum = 0, label_smoothing = 0.1, grad_clip = 5}",
                                  "gpus = 2\noverrides = {batch_size = 32}"])
def test_good_overrides_still_load(line: str, tmp_path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.cli.main import main

    suite = tmp_path / "t.toml"
    suite.write_text(BASE + line + "\n")
    assert main(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"]) == 0, capsys.readouterr().err


def test_every_recipe_field_has_a_rule_that_its_defaults_pass() -> None:
    import dataclasses

    from dynconv_bench.execution.suite_measure import RECIPE_OVERRIDES
    from dynconv_bench.training.recipes import RECIPES

    fields = {f.name for f in dataclasses.fields(get_recipe("digits-quick"))} - {"name"}
    assert fields == set(RECIPE_OVERRIDES)
    for recipe in RECIPES.values():  # every shipped recipe's own values are valid overrides
        for key, value in recipe.to_dict().items():
            if key in RECIPE_OVERRIDES and value is not None:
                assert RECIPE_OVERRIDES[key][1](value), (recipe.name, key, value)
