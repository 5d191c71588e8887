"""Deployability matrix, the checked ONNX export and its CLI, the deploy cell kind and report section."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch
from dynconv_bench_variants.dyconv import DyConv2d
from dynconv_bench_variants.odconv import ODConv2d
from torch import nn

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.measure_cell import run_cell
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures.deploy import deploy_table
from dynconv_bench.metrics.export import (
    TARGETS,
    TOLERANCE,
    calibrate_batchnorm,
    deploy_matrix,
    export_checked,
    fixed_inputs,
    ort_runner,
    ort_session,
)
from dynconv_bench.models.convert import create_model, deploy
from dynconv_bench.reporting.report import render

pytest.importorskip("onnxruntime")


def _tiny(dynamic: bool | str) -> nn.Module:
    """Stem conv, one (dynamic) 3x3 conv, pooling head: a model that exports in a second."""
    mid = nn.Conv2d(8, 8, 3, padding=1, bias=True)
    layer = mid
    if dynamic == "odconv":
        layer = ODConv2d(mid, num_kernels=2, min_channels=4, temperature=1.0)
    elif dynamic:
        layer = DyConv2d(mid, num_kernels=3, temperature=1.0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), layer, nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


@pytest.mark.parametrize("dynamic", [False, True, "odconv"], ids=["static", "dyconv", "odconv"])
def test_matrix_of_a_tiny_model_is_ok_with_dynamic_batch(dynamic: bool | str) -> None:
    model = _tiny(dynamic)
    out = deploy_matrix(model, (3, 16, 16), targets=("torch_export", "onnx", "torchscript"),
                        threads=1, min_time=0.01, warmup=1)
    assert out["ok"] == ["torch_export", "onnx", "torchscript"]
    for name in out["ok"]:
        entry = out["targets"][name]
        assert set(entry["max_abs_diff"]) == {"1", "4"}
        assert max(entry["max_abs_diff"].values()) <= TOLERANCE
    assert out["targets"]["torch_export"]["dynamic_batch"] and out["targets"]["onnx"]["dynamic_batch"]
    assert out["targets"]["onnx"]["ort_vs_eager"] > 0 and out["threads"] == 1
    with torch.no_grad():  # the scale of the outputs the differences are read against, on the fixed input
        assert out["eager_max_abs"]["4"] == float(model(fixed_inputs((3, 16, 16))[4]).abs().max())


def test_trace_of_a_per_sample_conv_does_not_freeze_the_batch() -> None:
    """Traced at batch 4 (grouped conv with 4x the groups in eager), the trace still runs batches 1 and 3."""
    model = _tiny(True)
    traced = torch.jit.trace(model, torch.randn(4, 3, 16, 16), check_trace=False)
    for b in (1, 3):
        x = torch.randn(b, 3, 16, 16)
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_wrong_output_is_a_failed_entry() -> None:
    class Drifts(nn.Module):  # eager adds a counter that a trace freezes: outputs differ after tracing
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return x.mean((1, 2, 3)) + float(self.calls)

    out = deploy_matrix(Drifts(), (3, 4, 4), targets=("torchscript",))
    entry = out["targets"]["torchscript"]
    assert entry["status"] == "failed" and entry["error"].startswith("outputs differ from eager")
    assert out["ok"] == []


def test_unknown_target_is_a_user_error() -> None:
    with pytest.raises(UserError, match="valid: torch_export, onnx, compile, torchscript"):
        deploy_matrix(_tiny(False), (3, 8, 8), targets=("tflite",))


def test_missing_onnxruntime_fails_the_cell_and_the_cli_naming_the_extra(monkeypatch, capsys, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    cell = Cell("t", "cifar_resnet8", "static", "static", {}, "deploy",
                {"input_size": [3, 32, 32], "num_classes": 10, "targets": None})
    result = run_cell(cell)
    assert result["status"] == "failed"
    assert "onnxruntime" in result["error"] and "dynconv-bench[deploy]" in result["error"]
    assert main(["export", "cifar_resnet8", "static", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dynconv-bench[deploy]" in err[0]
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_writes_a_model_onnxruntime_runs_like_eager(tmp_path, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "r8.onnx"
    torch.manual_seed(3)
    assert main(["export", "cifar_resnet8", "static", "--format", "onnx", "-o", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"ok: wrote {path}")
    torch.manual_seed(3)  # the same initial weights as the CLI's model
    model = deploy(create_model("cifar_resnet8", "static", num_classes=10))
    run = ort_runner(ort_session(path, 1))
    for b in (1, 2, 5):  # a dynamic batch: sizes the check did not use work too
        x = torch.randn(b, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(run(x), model(x), rtol=1e-4, atol=1e-4)


def test_export_cli_bad_format_exits_2(tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["export", "cifar_resnet8", "static", "--format", "tflite", "-o", str(tmp_path / "m")]) == 2
    assert "unknown export format 'tflite'; valid: onnx" in capsys.readouterr().err


def test_checked_export_leaves_no_file_when_outputs_differ(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import dynconv_bench.metrics.export as ex

    real = ex._diffs
    monkeypatch.setattr(ex, "_diffs", lambda run, inputs, ref: {k: v + 1.0 for k, v in real(run, inputs, ref).items()})
    with pytest.raises(RuntimeError, match="onnxruntime outputs differ from eager"):
        export_checked(_tiny(False), tmp_path / "m.onnx", (3, 16, 16))
    assert list(tmp_path.iterdir()) == []


def test_suite_accepts_deploy_and_checks_targets() -> None:
    base = {"backbones": ["cifar_resnet8"], "variants": ["static"]}
    suite = parse_suite({**base, "measure": {"deploy": {"targets": ["onnx"]}}})
    (cell,) = suite.cells()
    assert cell.kind == "deploy" and cell.options["targets"] == ["onnx"] and cell.options["input_size"] == [3, 32, 32]
    with pytest.raises(UserError, match="unknown deploy target 'onx'.*valid: compile, onnx"):
        parse_suite({**base, "measure": {"deploy": {"targets": ["onx"]}}})


def test_report_shows_the_matrix_in_markdown_and_html() -> None:
    values = {"targets": {
        "onnx": {"status": "ok", "max_abs_diff": {"1": 2e-6, "4": 3e-6}, "dynamic_batch": True, "ort_vs_eager": 1.5},
        "torchscript": {"status": "failed", "error": "RuntimeError: no"}}}
    df = pd.DataFrame([{"suite": "s", "backbone": "resnet18", "variant": "dyconv", "kind": "deploy", "status": "ok",
                        "values": values, "options": {}, "environment": {}, "error": None, "id": 1,
                        "finished": "2026-01-01"}])
    table = deploy_table(df)
    assert list(table.columns) == ["onnx", "torchscript", "ORT/eager"]
    row = table.loc["resnet18/dyconv"]
    assert row["onnx"] == "ok (diff 3e-06, dyn)" and row["torchscript"] == "FAILED: RuntimeError: no"
    assert row["ORT/eager"] == "1.50x"
    assert "## Deployability" in render(df, "md", "s")
    assert "<h2>Deployability</h2>" in render(df, "html", "s") and "FAILED: RuntimeError: no" in render(df, "html", "s")
    rows = {r["model"]: r for r in json.loads(render(df, "json", "s"))["deployability"]}
    assert rows["resnet18/dyconv"]["ORT/eager"] == "1.50x"
    assert "In brackets" not in render(df, "md", "s")  # no leaderboard, so no note about its ratios


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["static", "dyconv"])
def test_matrix_on_cifar_resnet20(variant: str) -> None:
    model = deploy(create_model("cifar_resnet20", variant, num_classes=10))
    out = deploy_matrix(model, (3, 32, 32), threads=1, min_time=0.05, warmup=1)
    assert out["ok"] == list(TARGETS), {t: e.get("error") for t, e in out["targets"].items()}
    for entry in out["targets"].values():
        assert max(entry["max_abs_diff"].values()) <= TOLERANCE
    assert out["targets"]["onnx"]["dynamic_batch"] and out["targets"]["onnx"]["ort_vs_eager"] > 0


def test_a_difference_is_read_against_the_output_scale() -> None:
    class TinyDrift(nn.Module):  # outputs ~1e-9: an absolute 1e-3 would pass anything; 5% of the scale must not
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return 1e-9 * (x.mean((1, 2, 3)) * 0 + 1.0 + 0.05 * self.calls)

    entry = deploy_matrix(TinyDrift(), (3, 4, 4), targets=("torchscript",))["targets"]["torchscript"]
    assert entry["status"] == "failed" and max(entry["max_abs_diff"].values()) < 1e-9
    assert entry["max_rel_diff"] > TOLERANCE and "of the output scale" in entry["error"]


def test_batchnorm_calibration_gives_a_fresh_network_o1_outputs_and_restores_it() -> None:
    model = create_model("mobilenetv2_100", "odconv", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x).abs().max().item()
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert calibrate_batchnorm(model, (3, 64, 64), batches=2, batch_size=4) == len(momenta)
    assert not model.training and momenta == [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        after = model(x).abs().max().item()
    assert before < 1e-6 and 0.1 < after < 100  # random-init eval outputs vanish; calibrated ones do not
