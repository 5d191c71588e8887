"""A conversion that converts nothing says so and why (ConversionReport.reason, stored by the params cell)."""

from __future__ import annotations

import pytest
from torch import nn

from dynconv_bench import create_model
from dynconv_bench.measures import get_kind, options_of
from dynconv_bench.models.convert import convert
from dynconv_bench.models.modelspec import ModelSpec


def _params(backbone: str, variant: str, **config) -> dict:
    return get_kind("params").measure(ModelSpec(backbone, variant, config),
                                      options_of("params", {"num_classes": 10})).to_values()


@pytest.mark.parametrize("backbone", ["densenet121", "ese_vovnet19b_dw"])
def test_kerneldna_and_static_se_on_backbones_without_shareable_convs_say_why(backbone):
    dna = create_model(backbone, "kerneldna", num_classes=10).dynconv_report
    assert dna.converted == [] and dna.nothing_converted
    assert dna.reason.startswith("KernelDNA found no shareable pairs: no two of the ")
    se = create_model(backbone, "static-se", num_classes=10).dynconv_report
    assert se.nothing_converted and se.reason == f"its SE sites are KernelDNA's children, and {dna.reason}"
    assert f"; no layer converted: {dna.reason}" in dna.summary()


def test_the_params_cell_stores_the_mark_and_the_reason():
    values = _params("ese_vovnet19b_dw", "kerneldna")
    assert values["converted_layers"] == 0 and values["total_convs"] == 41
    assert values["no_layer_converted"] is True
    assert values["no_conversion_reason"].startswith("KernelDNA found no shareable pairs")
    converted = _params("cifar_resnet20", "kerneldna")
    assert converted["converted_layers"] > 0
    assert converted["no_layer_converted"] is False and converted["no_conversion_reason"] is None


def test_static_converts_nothing_by_design_and_is_not_marked():
    report = create_model("cifar_resnet20", "static", num_classes=10).dynconv_report
    assert report.converted == [] and not report.nothing_converted and report.reason is None


def test_reasons_for_a_policy_that_selects_nothing_and_a_model_without_convs():
    model = create_model("cifar_resnet20", "dyconv", num_classes=10, policy="re:^nomatch$")
    n = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert model.dynconv_report.reason == f"policy 're:^nomatch$' selects none of the model's {n} convs"
    report = convert(nn.Sequential(nn.Linear(4, 4)), "condconv").dynconv_report
    assert report.reason == "the model has no Conv2d layer"


def test_kerneldna_names_pairs_that_an_adapter_would_not_save():
    # two 1x1 depthwise convs of 8 channels share a shape, but an adapter (filter modulation, SE) costs more than 8
    model = convert(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1, groups=8), nn.Conv2d(8, 8, 1, groups=8)),
                    "kerneldna", policy="all")
    assert model.dynconv_report.reason == ("KernelDNA found 1 shareable convs, but no adapter is smaller than the "
                                           "kernel it would replace (require_saving=True)")


def test_the_leaderboard_says_which_rows_converted_nothing_and_why(tmp_path) -> None:  # noqa: ANN001
    """A variant that converts nothing would otherwise sit on the leaderboard as an exact copy of static."""
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.suite import parse_suite
    from dynconv_bench.reporting.report import render
    from dynconv_bench.reporting.rows import load_results

    suite = parse_suite({"name": "nc", "backbones": ["densenet121"], "variants": ["static", "kerneldna"],
                         "measure": {"params": {"num_classes": 10}}})
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_suite(suite, store, progress=False)
        df = load_results(store, "nc")
    md = render(df, "md", "nc")
    line = next(ln for ln in md.splitlines() if ln.startswith("No layer converted"))
    assert "kerneldna on densenet121 (" in line and "static on" not in line
    assert "No layer converted" in render(df, "html", "nc")
