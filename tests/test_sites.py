from __future__ import annotations

import pytest
import timm
from torch import nn

from dynconv_bench.errors import UserError
from dynconv_bench.models.sites import POLICIES, find_conv_sites, select_sites, validate_policy


def _roles(model: nn.Module) -> dict[str, str]:
    return {s.name: s.role for s in find_conv_sites(model)}


def test_resnet18_roles_and_stages():
    sites = find_conv_sites(timm.create_model("resnet18"))
    roles = {s.name: s.role for s in sites}
    assert roles["conv1"] == "stem"
    assert roles["layer1.0.conv1"] == "block"
    assert roles["layer2.0.downsample.0"] == "shortcut"
    assert sum(r == "block" for r in roles.values()) == 16
    assert sum(r == "shortcut" for r in roles.values()) == 3
    assert {s.stage for s in sites if s.role == "block"} == {"layer1", "layer2", "layer3", "layer4"}


def test_mobilenetv2_stem_head_and_blocks():
    roles = _roles(timm.create_model("mobilenetv2_100"))
    assert roles["conv_stem"] == "stem"
    assert roles["conv_head"] == "head"
    assert roles["blocks.0.0.conv_dw"] == "block"
    assert list(roles.values()).count("block") == 50  # 17 blocks: 2 convs in the first, 3 in 16 others


def test_efficientnet_se_convs_are_attention_not_blocks():
    roles = _roles(timm.create_model("efficientnet_b0"))
    assert roles["blocks.1.0.se.conv_reduce"] == "attention"
    assert roles["blocks.1.0.conv_pw"] == "block"


def test_plain_module_tree_falls_back_to_stem_and_body():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 1))
    assert list(_roles(model).values()) == ["stem", "block", "block"]


@pytest.mark.parametrize("policy,expected", [
    ("all", 20), ("no-stem", 19), ("blocks", 16), ("blocks+head", 16), ("blocks-kxk", 16),
])
def test_policies_on_resnet18(policy, expected):
    sites = find_conv_sites(timm.create_model("resnet18"))
    assert len(select_sites(sites, policy)) == expected


def test_last_three_stages_policy_selects_the_late_stages():
    sites = find_conv_sites(timm.create_model("efficientnet_b0"))
    chosen = select_sites(sites, "last-3-stages")
    assert {s.stage for s in chosen} == {"blocks.4", "blocks.5", "blocks.6"}


def test_regex_and_callable_policies():
    sites = find_conv_sites(timm.create_model("resnet18"))
    assert [s.name for s in select_sites(sites, r"re:^layer4\.1\.")] == ["layer4.1.conv1", "layer4.1.conv2"]
    assert len(select_sites(sites, lambda s: s.stride == (2, 2))) == 7


def test_unknown_policy_names_valid_ones():
    with pytest.raises(UserError, match="unknown policy 'blokcs'.*did you mean 'blocks'.*valid:"):
        validate_policy("blokcs")
    with pytest.raises(UserError, match="not a valid regular expression"):
        validate_policy("re:(")
    assert set(POLICIES) >= {"all", "blocks", "blocks+head", "no-stem"}


def test_sharing_key_groups_identical_convs():
    sites = [s for s in find_conv_sites(timm.create_model("resnet18")) if s.stage == "layer2" and s.role == "block"]
    keys = {}
    for s in sites:
        keys.setdefault(s.sharing_key, []).append(s.name)
    assert sorted(map(len, keys.values())) == [1, 3]  # the stride-2 conv alone, three 128->128 3x3 convs
