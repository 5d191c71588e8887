"""scripts/gpu-check.sh and scripts/fused_check.py on a machine without CUDA: argument handling, the fast failure,
and the dry run (the plan and the roofline predictions, labelled as predictions)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def _check(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / "gpu-check.sh"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHON": sys.executable, **(env or {})})


@pytest.mark.parametrize("args, env, message", [
    (["--bogus"], {}, "gpu-check: unknown option '--bogus'; valid: --dry-run, --skip-tests, --skip-suite, --help"),
    (["a", "b"], {}, "gpu-check: one WORK_DIR only (got 'a' and 'b')"),
    ([], {"GPU_CHECK_SUITE_TIMEOUT": "5m"}, "gpu-check: GPU_CHECK_SUITE_TIMEOUT must be a whole number of seconds, "
                                            "got '5m'"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, env, message) -> None:  # noqa: ANN001
    proc = _check(*args, env=env)
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, message + "\n", "")


@no_cuda
def test_without_cuda_it_stops_before_installing_anything(tmp_path) -> None:  # noqa: ANN001
    work = tmp_path / "work"
    proc = _check(str(work))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("gpu-check: no CUDA device: torch.cuda.is_available() is False")
    assert proc.stderr.count("\n") == 1 and not work.exists()


def _fused_check():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("fused_check", SCRIPTS / "fused_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fused_check_dry_run_prints_the_cost_model_predictions(capsys, tmp_path) -> None:  # noqa: ANN001
    from dynconv_bench.metrics.roofline import predict_model

    mod = _fused_check()
    out_json = tmp_path / "fused.json"
    assert mod.main(["--dry-run", "--variants", "odconv-1x", "--settings", "b128-bf16", "--gpu", "l4",
                     "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^predicted columns: cost model for l4 \(whole forward; .*fitted 2026-12-07\), not measurements$",
                     out, re.M)
    pred = predict_model("resnet18", "odconv", {"num_kernels": 1}, "l4", 128, "bf16", 224, True, "eager")
    row = re.search(r"^odconv-1x\s+b128-bf16\s+-\s+-\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert row.groups() == (f"{pred.ratio('unfused'):.2f}", f"{pred.ratio('fused'):.2f}")
    assert 0.05 < pred.ratio("unfused") < 1.0  # ODConv 1x is slower than static on any GPU the model knows
    assert '"measured_fused": null' in out_json.read_text()  # nothing measured in a dry run


@pytest.mark.parametrize("argv, message", [
    (["--variants", "condconv,nope"], "unknown variant nope; valid: static-se, condconv"),
    (["--settings", "b64"], "unknown setting b64; valid: b1-graph, b128-fp32, b128-bf16"),
    (["--gpu", "v100"], "unknown GPU 'v100'; valid: h100, h200, a100, l4"),
])
def test_fused_check_refuses_unknown_names(argv, message, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        _fused_check().main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@no_cuda
def test_fused_check_without_cuda_says_so(capsys) -> None:  # noqa: ANN001
    assert _fused_check().main(["--variants", "dcd", "--settings", "b1-graph"]) == 2
    assert "fused_check: no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_dry_run_lists_the_steps_their_limits_and_every_variant() -> None:
    proc = _check("--dry-run", "--skip-tests", env={"GPU_CHECK_FUSED_TIMEOUT": "100", "GPU_CHECK_SUITE_TIMEOUT": "90"},
                  timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "eager vs forced fused (fused_check.py)   100" in proc.stdout
    assert "total at most 190 s plus the install" in proc.stdout and "GPU test tier" not in proc.stdout
    for label in ("static-se", "condconv", "dyconv", "odconv-1x", "odconv-4x", "kernelwarehouse", "dcd", "kerneldna"):
        assert len(re.findall(rf"^{label}\s+b", proc.stdout, re.M)) == 3, label
