from __future__ import annotations

import pytest

from dynconv_bench import ConfigError, Param, Variant


class Toy(Variant):
    name = "toy"
    paper = "Toy et al. A toy variant. 2024"
    year = 2024
    presets = {"paper": {"resnet18": {"num_kernels": 2}}}
    params = {
        "num_kernels": Param(4, min=1),
        "reduction": Param(0.25, min=0.0, max=1.0),
        "policy": Param("blocks", type=str),
        "mode": Param("a", choices=("a", "b")),
        "se": Param(True),
    }


def test_defaults_and_overrides():
    assert Toy().cfg == {"num_kernels": 4, "reduction": 0.25, "policy": "blocks", "mode": "a", "se": True}
    assert Toy(num_kernels=8, reduction=1).cfg["reduction"] == 1.0  # int accepted for a float key


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'num_kernel' \(did you mean 'num_kernels'\?\); valid keys: "
                                          r"mode, num_kernels, policy, reduction, se"):
        Toy(num_kernel=2)


@pytest.mark.parametrize("cfg,message", [
    ({"num_kernels": "4"}, "must be int, not str"),
    ({"num_kernels": 2.5}, "must be int, not float"),
    ({"num_kernels": True}, "must be int, not bool"),
    ({"num_kernels": 0}, "below the minimum 1"),
    ({"reduction": 2.0}, "above the maximum 1.0"),
    ({"mode": "c"}, "valid: a, b"),
    ({"se": 1}, "must be bool"),
])
def test_bad_values_raise(cfg, message):
    with pytest.raises(ConfigError, match=message):
        Toy(**cfg)


def test_describe_lists_paper_defaults_params_and_presets():
    d = Toy.describe()
    assert (d["name"], d["paper"], d["year"]) == ("toy", "Toy et al. A toy variant. 2024", 2024)
    assert d["defaults"] == Toy().cfg
    assert d["params"]["reduction"] == {"type": "float", "default": 0.25, "min": 0.0, "max": 1.0, "help": ""}
    assert d["params"]["mode"] == {"type": "str", "default": "a", "choices": ["a", "b"], "help": ""}
    assert d["presets"] == {"paper": ["resnet18"]}


def test_preset_config_and_its_errors():
    assert Toy.preset_config("paper", "resnet18") == {"num_kernels": 2}
    with pytest.raises(ConfigError, match=r"^toy: no 'paper' preset for backbone 'resnet50'; backbones with one: resnet18$"):
        Toy.preset_config("paper", "resnet50")
    with pytest.raises(ConfigError, match=r"^toy: unknown preset 'fast'; valid presets: paper$"):
        Toy.preset_config("fast", "resnet18")
