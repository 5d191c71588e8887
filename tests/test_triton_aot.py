"""Ahead-of-time compiles of the fused conv kernel for sm_80 and sm_90 (Triton's compiler and bundled ptxas, no GPU).

Default run: the configurations the launcher picks for ResNet-18 with a K = 4 mixture (CondConv), a shared kernel
with every scale (ODConv 1x), warehouse cells (KernelWarehouse) and a low-rank residual (DCD); per kernel family the
largest tile of each precision, compiled once per session. Slow tier: every configuration of every built-in variant
on ResNet-18/50 and MobileNetV2 at batch 1 and 128 in fp32 (TF32, IEEE), bf16 and fp16, and the committed report
(docs/fused-kernels.json) lists exactly those.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("triton")
from dynconv_bench_variants._speed_configs import VARIANTS  # noqa: E402
from triton import knobs  # noqa: E402

from dynconv_bench.models.triton_aot import (  # noqa: E402
    BACKBONES,
    compile_report,
    family,
    launcher_configs,
    model_problems,
    precision_class,
    representative,
)
from dynconv_bench.models.triton_tiles import ConvProblem, choose_tiles  # noqa: E402

REPORT = Path(__file__).resolve().parents[1] / "docs" / "fused-kernels.json"

try:
    knobs.nvidia.ptxas.path  # noqa: B018 (the bundled ptxas: absent from a Triton build without the CUDA tools)
    HAVE_PTXAS = True
except Exception:  # noqa: BLE001
    HAVE_PTXAS = False
needs_ptxas = pytest.mark.skipif(not HAVE_PTXAS, reason="Triton's bundled ptxas is not available")


def _check(key_json: str, arch: int) -> None:
    """Compiles (an error fails the test), never spills, and runs its dots on tensor cores unless IEEE fp32."""
    report = compile_report(key_json, arch)
    key = json.loads(key_json)
    where = f"sm_{arch} {family(key)} {precision_class(key)} {key}"
    assert report.spill_stores == report.spill_loads == 0, f"spills {report.spill_stores} B: {where}"
    assert 0 < report.registers <= 255, where
    if precision_class(key) == "ieee":  # fp32 without TF32: FMA dots by request (cudnn.allow_tf32 False)
        assert report.instructions == "fma" and report.counts["FFMA"] > 0, where
    else:
        assert report.tensor_cores, f"no tensor-core instruction: {where} {report.counts}"
        assert report.instructions == ("wgmma" if arch >= 90 else "mma"), where


@pytest.fixture(scope="module")
def resnet18_configs() -> dict[str, set[int]]:
    problems = []
    for label, name, cfg in VARIANTS:
        if label in ("condconv", "odconv-1x", "kernelwarehouse", "dcd"):
            problems += model_problems("resnet18", name, cfg)
    return launcher_configs(problems)


def test_the_launcher_sees_every_kernel_family_and_precision(resnet18_configs):
    keys = [json.loads(k) for k in resnet18_configs]
    assert {family(k) for k in keys} == {"mixture", "shared", "cells", "lowrank"}
    assert {precision_class(k) for k in keys} == {"tf32", "ieee", "bf16", "fp16"}
    assert all(k["BM"] >= 64 for k in keys)  # a warpgroup's M: sm_90 can issue wgmma
    assert any(k["out_dtype"] == "fp32" and k["dtype"] != "fp32" for k in keys)  # split-K at batch 1
    assert all(archs == {80, 90} for archs in resnet18_configs.values())


@needs_ptxas
def test_representative_configs_compile_for_sm80_and_sm90_without_spills(resnet18_configs):
    picks = {90: ("tf32", "bf16"), 80: ("fp16", "ieee")}
    chosen = representative(resnet18_configs, picks)
    assert len(chosen) == 16  # 4 families x 2 archs x 2 precisions
    for key_json, arch in chosen:
        _check(key_json, arch)


def test_split_k_only_when_the_grid_leaves_most_sms_idle():
    for p in (ConvProblem(1, 512, 512, 1, (3, 3), (7, 7), num_k=4, precision="tf32"),  # ResNet-18's last stage
              ConvProblem(1, 64, 64, 1, (3, 3), (56, 56), num_k=4, precision="tf32")):  # its first: 25 row tiles
        t = choose_tiles(p, 132)
        ctas = -(-p.positions // t.bm) * -(-p.cout // t.bn)
        steps = 9 * -(-p.cin // t.bk)
        assert ctas * 2 <= 132 and t.splits > 1
        assert ctas * t.splits <= 132 and -(-steps // t.splits) >= 4  # one wave at most; 4+ steps per split
        assert choose_tiles(dataclasses.replace(p, batch=128), 132).splits == 1  # 128 samples fill the SMs
        assert choose_tiles(p, None).splits == 1  # the interpreter: no SM count, no split


@pytest.mark.slow
@needs_ptxas
def test_every_launcher_config_of_the_builtin_variants_compiles_and_the_report_lists_them():
    configs: dict[str, set[int]] = {}
    for backbone, size in BACKBONES.items():
        for _, name, cfg in VARIANTS:
            for key, archs in launcher_configs(model_problems(backbone, name, cfg, size)).items():
                configs.setdefault(key, set()).update(archs)
    for key_json, archs in sorted(configs.items()):
        for arch in sorted(archs):
            _check(key_json, arch)
    report = json.loads(REPORT.read_text())
    listed = {json.dumps({k: v for k, v in row.items() if k not in ("family", "used_by", "archs")}, sort_keys=True):
              {int(a[3:]) for a in row["archs"]} for row in report["configs"]}
    assert listed == configs, "docs/fused-kernels.json is stale: rerun scripts/fused_kernels_report.py"
