"""`dynconv-bench convert`: the MAC profile beside the params, and the roofline prediction (labelled as one)."""

from __future__ import annotations

import json
import re

import pytest

import dynconv_bench
from dynconv_bench.cli.main import main
from dynconv_bench.cli.models import GPU_NAMES
from dynconv_bench.metrics.roofline import GPUS


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
    assert "predicted (roofline model, not measured) on A100 SXM 80GB, batch 16 fp32" in out
    shown = {k: (float(ms), float(r)) for k, ms, r in
             re.findall(r"^  (\S+(?: \S+)*?)\s+([\d.]+) ms  predicted ratio to static ([\d.]+)$", out, re.M)}
    # ODConv's spatial attention forbids output_space (per_sample_conv refuses it): the model must not offer it
    assert "output_space" not in shown and {"best unfused per layer", "grouped", "bmm", "fused"} <= set(shown)
    best = shown["best unfused per layer"]
    # the tuner keeps the fastest strategy per layer: never slower than any one strategy everywhere
    assert all(best[0] <= shown[s][0] + 1e-3 for s in ("grouped", "bmm"))
    # a dynamic variant adds attention ops and per-sample kernels: slower than static, but not absurdly
    assert 0.05 < best[1] < 1.0
    static_ms = float(re.search(r"whole forward, eager: static ([\d.]+) ms", out).group(1))
    assert best[1] == pytest.approx(static_ms / best[0], abs=0.006)  # the ratio is static time / variant time


def test_convert_json_carries_the_same_prediction_as_the_text(capsys) -> None:  # noqa: ANN001
    args = ["convert", "cifar_resnet8", "condconv", "num_kernels=3", "--roofline", "h200", "--batch", "8"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    pred = doc["roofline"]
    assert pred["predicted"] is True and "not a measurement" in pred["model"] and pred["gpu"] == "H200 SXM"
    assert (pred["batch"], pred["dtype"], pred["channels_last"], pred["mode"]) == (8, "fp32", False, "eager")
    assert sum(pred["picks"].values()) == len(doc["converted"])  # one strategy per converted conv
    line = re.search(r"^  best unfused per layer\s+([\d.]+) ms  predicted ratio to static ([\d.]+)$", text, re.M)
    unfused = pred["strategies"]["unfused"]
    assert line.groups() == (f"{unfused['ms']:.3f}", f"{unfused['ratio_to_static']:.2f}")
    assert unfused["ratio_to_static"] == pytest.approx(pred["static_ms"] / unfused["ms"])
    assert "output_space" in pred["strategies"]  # CondConv has no spatial attention: output_space applies


def test_convert_refuses_an_unknown_gpu(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["convert", "cifar_resnet8", "odconv", "--roofline", "v100"])
    assert exc.value.code == 2
    assert "invalid choice: 'v100'" in capsys.readouterr().err


def test_the_cli_lists_every_gpu_of_the_roofline() -> None:
    assert GPU_NAMES == tuple(GPUS)
