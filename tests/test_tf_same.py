"""TF 'SAME' padding (timm's Conv2dSame, input-size dependent) is kept by every converted layer."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from dynconv_bench_variants.kerneldna import KernelDNAConv, share_kernel
from timm.layers import Conv2dSame

import dynconv_bench
from dynconv_bench.models.conv_spec import ConvSpec

BACKBONE = "tf_efficientnet_b0"
X_SIZE = (2, 3, 67, 67)  # odd: TF 'SAME' pads stride-2 convs asymmetrically (0 before, 1 after)

# Variants whose converted model computes exactly the static model at init, given these settings and the
# weights below: KernelDNA without SE (children start as copies of their parent), DyConv with one kernel
# (softmax over one kernel is 1, its kernel set to the static one).
EQUAL_AT_INIT = {"static": {}, "kerneldna": {"se": False}, "dyconv": {"num_kernels": 1}}
# Variants that by construction do not: an SE scale in (0, 1), sigmoid routing, ODConv's attentions.
DIFFERENT_AT_INIT = {"static-se": {}, "condconv": {"num_kernels": 1}, "odconv": {"num_kernels": 1}}


def test_kerneldna_child_of_a_tf_same_conv_computes_the_parent_conv():
    parent = Conv2dSame(6, 8, 3, stride=2, bias=True)
    child = share_kernel(parent, copy.deepcopy(parent), se=False)
    x = torch.randn(2, 6, 13, 13)
    torch.testing.assert_close(child(x), parent(x))
    deployed = child.deploy_module()
    assert isinstance(deployed, Conv2dSame)
    torch.testing.assert_close(deployed(x), parent(x))
    with_se = KernelDNAConv(parent).eval()
    torch.testing.assert_close(with_se(x), parent(x * with_se.se(x)))


def test_share_kernel_rejects_a_tf_same_and_a_plain_conv():
    with pytest.raises(ValueError, match="tf_same"):
        share_kernel(Conv2dSame(4, 4, 3, stride=2), torch.nn.Conv2d(4, 4, 3, stride=2))


def _static_reference(static: torch.nn.Module, converted: torch.nn.Module) -> torch.nn.Module:
    """The static model with each converted conv given the single kernel its replacement starts from."""
    ref = copy.deepcopy(static)
    with torch.no_grad():
        for name in converted.dynconv_report.converted:
            layer, conv = converted.get_submodule(name), ref.get_submodule(name)
            assert layer.geometry == ConvSpec.from_conv(conv)
            if isinstance(layer, KernelDNAConv):
                conv.weight.copy_(layer.weight)
            elif hasattr(layer, "num_kernels"):
                layer.weight[0].copy_(conv.weight)
                if conv.bias is not None:
                    layer.bias[0].copy_(conv.bias)
    return ref


@pytest.mark.parametrize("variant", dynconv_bench.list_variants())
def test_every_variant_at_init_on_a_tf_backbone(variant):
    """Every registered variant keeps each converted conv's TF-same geometry; where the model equals static
    at init by construction it computes it, where it cannot it differs (plugins: geometry and shape only)."""
    cfg = EQUAL_AT_INIT.get(variant, DIFFERENT_AT_INIT.get(variant, {}))
    static = timm.create_model(BACKBONE, num_classes=10).eval()
    converted = dynconv_bench.convert(copy.deepcopy(static), variant, **cfg).eval()
    assert variant == "static" or converted.dynconv_report.converted
    originals = dict(static.named_modules())
    kept = [(name, m.geometry, ConvSpec.from_conv(originals[name])) for name in converted.dynconv_report.converted
            for m in [converted.get_submodule(name)] if isinstance(getattr(m, "geometry", None), ConvSpec)]
    assert all(g == want for _, g, want in kept), [n for n, g, want in kept if g != want]
    if variant not in EQUAL_AT_INIT and variant not in DIFFERENT_AT_INIT:
        with torch.no_grad():
            out, expected = converted(torch.randn(*X_SIZE)), static(torch.randn(*X_SIZE))
        assert out.shape == expected.shape and torch.isfinite(out).all()
        return
    ref = _static_reference(static, converted)
    x = torch.randn(*X_SIZE)
    with torch.no_grad():  # features, compared relative to their scale (tiny at init)
        out, expected = converted.forward_features(x), ref.forward_features(x)
    scale = expected.abs().max().item()
    assert scale > 0
    if variant in EQUAL_AT_INIT:
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * scale)
    else:
        assert (out - expected).abs().max() > 1e-2 * scale
