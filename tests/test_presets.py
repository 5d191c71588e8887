"""Paper presets: declared by each variant class, checked against the published parameter counts."""

from __future__ import annotations

import pytest
import timm

import dynconv_bench
from dynconv_bench import ConfigError, create_model, get_variant


def n_params(model) -> int:  # noqa: ANN001
    return sum(p.numel() for p in model.parameters())


def test_every_declared_preset_is_a_valid_config_of_its_variant():
    declared = 0
    for name in dynconv_bench.list_variants():
        cls = get_variant(name)
        for preset, by_backbone in cls.presets.items():
            for backbone, cfg in by_backbone.items():
                assert timm.is_model(backbone), (name, preset, backbone)
                assert cls(**cfg).cfg == {**cls.default_config(), **cfg}
                declared += 1
    assert declared >= 12  # condconv 1, dyconv 3, kerneldna 2, odconv 2 x 4


# ODConv's official release (ImageNet models): parameters in millions, to the 0.01M printed there
ODCONV_PUBLISHED = [
    ("paper", "resnet18", 11.94), ("paper-4x", "resnet18", 44.90),
    ("paper", "mobilenetv2_100", 4.94), ("paper-4x", "mobilenetv2_100", 11.51),
    ("paper", "mobilenetv2_050", 2.43), ("paper-4x", "mobilenetv2_050", 4.44),
    pytest.param("paper", "resnet50", 28.64, marks=pytest.mark.slow),
    pytest.param("paper-4x", "resnet50", 90.67, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("preset, backbone, millions", ODCONV_PUBLISHED)
def test_odconv_paper_presets_reproduce_the_published_parameter_counts(preset, backbone, millions):
    assert round(n_params(create_model(backbone, "odconv", preset=preset)) / 1e6, 2) == millions


def test_condconv_paper_preset_is_timms_port_of_the_official_b0_with_8_experts():
    model = create_model("efficientnet_b0", "condconv", preset="paper")
    assert model.dynconv_report.config == {"num_kernels": 8, "routing": "block", "policy": "last-3-stages"}
    assert n_params(model) == n_params(timm.create_model("efficientnet_cc_b0_8e"))


def test_explicit_keys_override_the_preset():
    model = create_model("efficientnet_b0", "condconv", preset="paper", num_kernels=4)
    assert model.dynconv_report.config["num_kernels"] == 4 and model.dynconv_report.config["routing"] == "block"
    assert n_params(model) == n_params(timm.create_model("efficientnet_cc_b0_4e"))


@pytest.mark.parametrize("variant", ["dyconv", "odconv"])
def test_temperature_presets_anneal_over_the_first_10_epochs_of_the_recipe(variant):
    from dynconv_bench.training.recipes import get_recipe

    for backbone, recipe in (("resnet18", "resnet"), ("mobilenetv2_050", "mobilenetv2")):
        cfg = get_variant(variant).preset_config("paper", backbone)
        assert cfg["anneal_fraction"] == pytest.approx(10 / get_recipe(f"{variant}-{recipe}").epochs)
        assert cfg["temperature"] == 30.0
    assert get_variant("dyconv").preset_config("paper", "resnet18")["num_kernels"] == 4


def test_kerneldna_paper_preset_shares_only_the_papers_stages():
    model = create_model("resnet18", "kerneldna", preset="paper")
    converted = model.dynconv_report.converted
    assert converted == ["layer3.0.conv2", "layer3.1.conv1", "layer4.0.conv2", "layer4.1.conv1"]


def test_a_backbone_without_a_preset_names_the_ones_that_have_one():
    with pytest.raises(ConfigError, match=r"^dyconv: no 'paper' preset for backbone 'resnet50'; "
                                          r"backbones with one: mobilenetv2_050, mobilenetv2_100, resnet18$"):
        create_model("resnet50", "dyconv", preset="paper")
