"""KernelWarehouse sizing (variants/_warehouse_plan.py): plans computed before allocation, the width split, the bound."""

from __future__ import annotations

import pytest
import timm
import torch
from dynconv_bench_variants import kernelwarehouse as kw_module
from dynconv_bench_variants._warehouse_plan import plan_warehouses
from dynconv_bench_variants.kernelwarehouse import KernelWarehouse, KWConv2d, warehouse_keys

from dynconv_bench import UserError, create_model
from dynconv_bench.models.sites import find_conv_sites, select_sites


def _plans(backbone: str, **cfg):
    full = KernelWarehouse.validate(cfg)
    sites = select_sites(find_conv_sites(timm.create_model(backbone, num_classes=10)), full["policy"])
    groups: dict[tuple, list] = {}
    for key, site in zip(warehouse_keys(sites, full["handover"], full["sharing"]), sites):
        groups.setdefault(key, []).append(site)
    return plan_warehouses(groups, full)


def _allocated_numel(model: torch.nn.Module) -> int:
    """Floats the variant allocated: each warehouse once, and every layer's attention parameters and buffers."""
    layers = [m for m in model.modules() if isinstance(m, KWConv2d)]
    warehouses = {id(m.warehouse): m.warehouse.numel() for m in layers}
    attention = sum(t.numel() for m in layers for n, t in [*m.named_parameters(), *m.named_buffers()]
                    if n not in ("warehouse", "bias") and t.is_floating_point())
    return sum(warehouses.values()) + attention


@pytest.mark.parametrize("backbone", ["ghostnet_100", "resnet18"])
def test_the_plan_is_exactly_what_is_allocated(backbone):
    plans = _plans(backbone)
    model = create_model(backbone, "kernelwarehouse", num_classes=10)
    assert sum(p.numel for p in plans) == _allocated_numel(model)
    built = {id(m.warehouse) for m in model.modules() if isinstance(m, KWConv2d)}
    assert len(built) == len(plans)


def test_ghost_modules_are_split_into_warehouses_of_compatible_widths():
    plans = _plans("ghostnet_100")
    for p in plans:  # every member cut into at most max(32, k*k) cells: the release's scale
        for site, m in zip(p.members, p.mixtures):
            assert m <= max(32, site.kernel_size[0] * site.kernel_size[1]), (p.label, site.name)
    assert sum(p.nbytes() for p in plans) < 32 * 2**20
    # the release's rule without the split: 92-, 100- and 240-channel convs share 4-channel cells, ~16 GB
    whole = _plans("ghostnet_100", max_mixtures=0)
    assert len(whole) < len(plans)
    worst = max(whole, key=lambda p: p.numel)
    assert worst.label == "blocks.6 [dw]" and worst.cell == (4, 1) and worst.nbytes() > 8 * 2**30


def test_ghostnet_builds_under_a_modest_bound():
    bound_mb = 8.0  # the largest planned group is under 5 MiB
    assert max(p.nbytes() for p in _plans("ghostnet_100")) < bound_mb * 2**20
    model = create_model("ghostnet_100", "kernelwarehouse", num_classes=10, max_group_mb=bound_mb)
    assert _allocated_numel(model) * 4 < 32 * 2**20
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 3, 64, 64))).all()


def test_an_oversized_group_is_refused_before_anything_is_allocated(monkeypatch):
    def no_layer(*args, **kwargs):
        raise AssertionError("a layer was built before the size check")

    monkeypatch.setattr(kw_module, "KWConv2d", no_layer)
    with pytest.raises(UserError, match=r"warehouse group 'blocks.6 \[dw\]' .* needs 8,204.8 MiB.* max_group_mb=1024 \(and 1 more over the bound\)"):
        create_model("ghostnet_100", "kernelwarehouse", num_classes=10, max_mixtures=0)
    with pytest.raises(UserError, match=r"'blocks.8 \[other\] #2' \(1 convs: conv_head\) needs 4.9 MiB.*max_group_mb=4"):
        create_model("ghostnet_100", "kernelwarehouse", num_classes=10, max_group_mb=4)


def test_the_split_leaves_warehouses_whose_widths_fit_unchanged():
    for backbone in ("resnet18", "resnet50", "mobilenetv2_100"):
        assert [p.members for p in _plans(backbone)] == [p.members for p in _plans(backbone, max_mixtures=0)]
