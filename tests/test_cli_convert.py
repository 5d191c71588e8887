"""`dynconv-bench convert`: the MAC profile beside the params, and the roofline prediction (labelled as one)."""

from __future__ import annotations

import re

import pytest

import dynconv_bench
from dynconv_bench.cli.main import main
from dynconv_bench.cli.models import GPU_NAMES
from dynconv_bench.metrics.roofline import GPUS, predict_model


def test_convert_prints_the_macs_the_profile_counts(capsys) -> None:  # noqa: ANN001
    assert main(["convert", "cifar_resnet8", "condconv", "num_kernels=3"]) == 0
    out = capsys.readouterr().out
    model = dynconv_bench.create_model("cifar_resnet8", "condconv", num_classes=None, num_kernels=3)
    prof = dynconv_bench.profile(model, input_size=(3, 32, 32))
    assert prof.overhead_macs > 0 and prof.conv_macs + prof.overhead_macs <= prof.macs
    assert (f"MACs per image {prof.macs:,} (conv {prof.conv_macs:,}, dynamic overhead {prof.overhead_macs:,}); "
            f"FLOPs {2 * prof.macs:,}") in out
    assert "predicted" not in out  # no roofline unless asked


def test_convert_prints_the_roofline_prediction_labelled_as_predicted(capsys) -> None:  # noqa: ANN001
    assert main(["convert", "cifar_resnet8", "odconv", "--roofline", "a100", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    pred = predict_model("cifar_resnet8", "odconv", {}, "a100", 16, "fp32", 32)
    assert "predicted (roofline model, not measured) on A100 SXM 80GB, batch 16 fp32" in out
    shown = dict(re.findall(r"^  (\S+(?: \S+)*?)\s+[\d.]+ ms  predicted ratio to static ([\d.]+)$", out, re.M))
    assert shown["best unfused per layer"] == f"{pred.ratio('unfused'):.2f}"
    assert shown["fused"] == f"{pred.ratio('fused'):.2f}"
    assert shown["grouped"] == f"{pred.ratio('grouped'):.2f}"


def test_convert_refuses_an_unknown_gpu(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["convert", "cifar_resnet8", "odconv", "--roofline", "v100"])
    assert exc.value.code == 2
    assert "invalid choice: 'v100'" in capsys.readouterr().err


def test_the_cli_lists_every_gpu_of_the_roofline() -> None:
    assert GPU_NAMES == tuple(GPUS)
