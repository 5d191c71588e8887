"""Errors that used to hide: a bad variant config changed a cell's hash, a mistyped backbone got 224x224 inputs,
two `default_num_classes` disagreed, and training's command line imported `cli` (issue 38)."""

from __future__ import annotations

import pytest

from dynconv_bench.errors import ConfigError, UserError
from dynconv_bench.execution import cell, suite, suite_cells, suite_checks, suite_measure, suite_variants
from dynconv_bench.execution.cell import Cell, with_defaults
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.models import backbones


def _cell(variant: str, config: dict) -> Cell:
    return Cell("s", "cifar_resnet8", variant, variant, config)


def test_a_bad_config_of_a_registered_variant_is_its_one_line_error_not_another_hash() -> None:
    with pytest.raises(ConfigError) as err:
        _cell("condconv", {"num_kernel": 4}).config_hash  # noqa: B018
    assert "num_kernel" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="num_kernels"):
        with_defaults("condconv", {"num_kernels": "many"})
    # a default written out changes nothing; only an unregistered variant hashes what was written
    assert _cell("condconv", {}).config_hash == _cell("condconv", {"routing": "layer"}).config_hash
    assert with_defaults("not-registered-here", {"k": 1}) == {"k": 1}
    assert _cell("not-registered-here", {"k": 1}).config_hash != _cell("not-registered-here", {}).config_hash


def test_a_plugin_validate_that_crashes_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynconv_bench.models.registry import get_variant

    cls = get_variant("static")

    def broken(cfg: dict) -> dict:
        raise RuntimeError("validate crashed")

    monkeypatch.setattr(cls, "validate", staticmethod(broken))
    with pytest.raises(RuntimeError, match="validate crashed"):
        _cell("static", {}).config_hash  # noqa: B018


@pytest.mark.parametrize("lookup", [backbones.default_input_size, backbones.default_num_classes])
def test_a_mistyped_backbone_is_one_line_naming_the_closest(lookup) -> None:  # noqa: ANN001
    with pytest.raises(UserError) as err:
        lookup("resnet81")
    text = str(err.value)
    assert text.startswith("unknown backbone 'resnet81' (did you mean 'resnet18'?); valid: ") and "\n" not in text


def test_backbone_defaults_of_known_names() -> None:
    assert backbones.default_input_size("cifar_resnet20") == (3, 32, 32)
    assert backbones.default_input_size("resnet18") == (3, 224, 224)
    assert backbones.default_num_classes("cifar_resnet20") == 10
    assert backbones.default_num_classes("resnet18") == 1000


def test_default_num_classes_has_one_home_the_suite_uses() -> None:
    for module in (cell, suite, suite_cells, suite_checks, suite_measure, suite_variants):
        assert not hasattr(module, "default_num_classes"), module.__name__
    s = parse_suite({"name": "n", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static"],
                     "measure": {"params": {}}})
    assert {c.backbone: c.options["num_classes"] for c in s.cells()} == {"cifar_resnet8": 10, "resnet18": 1000}


def test_the_key_value_parser_lives_below_cli() -> None:
    import dynconv_bench.cli.common as common
    from dynconv_bench.config_text import parse_config

    assert parse_config(["num_kernels=4", "routing=block", "spatial=true"]) == {
        "num_kernels": 4, "routing": "block", "spatial": True}
    with pytest.raises(UserError, match="must be key=value"):
        parse_config(["num_kernels"])
    assert not hasattr(common, "parse_config")  # one home, no copy


def test_training_command_line_parses_config_without_importing_cli() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom dynconv_bench.training.__main__ import main\n"
            "code = main(['--epochs', '1', 'num_kernels'])\n"
            "print(code, [m for m in sys.modules if m.startswith('dynconv_bench.cli')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "2 []", out.stderr
    assert "config 'num_kernels' must be key=value" in out.stderr
