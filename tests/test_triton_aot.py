"""Ahead-of-time compiles of the fused conv kernel for sm_80 and sm_90 (Triton's compiler and bundled ptxas, no GPU).

Default run: the configurations the launcher picks for ResNet-18 with a K = 4 mixture (CondConv), a shared kernel
with every scale (ODConv 1x), warehouse cells (KernelWarehouse) and a low-rank residual (DCD); per kernel family the
largest tile of each precision, compiled once per session; every configuration the launcher can pick for every
K the variants allow (1..MAX_KERNELS) fits each target's shared memory and registers, by the shared-memory model,
which bounds every compiled figure of the committed report. Slow tier: every configuration of every built-in variant
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
    shared_bound,
)
from dynconv_bench.models.triton_tiles import (  # noqa: E402
    TARGETS,
    ConvProblem,
    Tiles,
    choose_tiles,
    compile_key,
    ctas_per_sm,
    shared_bytes,
)
from dynconv_bench.models.variant import MAX_KERNELS  # noqa: E402

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


PRECISION_SETS = (("fp32", "tf32"), ("fp32", "ieee"), ("bf16", "ieee"), ("fp16", "ieee"))
DCD_MAX_LATENT = 1024  # variants/dcd.py: latent_dim's maximum


def _launcher_problems():  # noqa: ANN202
    """The problems a model converted by a built-in variant can hand the launcher, at every K the variants allow:
    mixtures of 1..MAX_KERNELS kernels (CondConv, DyConv: bias; ODConv: channel, filter and tap scales), warehouse
    cells and DCD's low-rank residual up to its widest latent, on 1x1 to 7x7 convs, dense and depthwise, at small
    and large feature maps, batch 1 (split-K) and 128, in every compute dtype and dot precision."""
    shapes = ((16, 16, 1, (112, 112)), (96, 576, 1, (14, 14)), (512, 512, 1, (7, 7)), (2048, 512, 1, (7, 7)),
              (64, 64, 1, (56, 56)), (576, 576, 576, (14, 14)), (32, 32, 32, (112, 112)))
    forms = [dict(num_k=k, has_bias=True) for k in range(1, MAX_KERNELS + 1)]
    forms += [dict(num_k=k, has_channel=True, has_filter=True, has_spatial=True) for k in (1, 4, 8, 16, MAX_KERNELS)]
    forms += [dict(mode=1, num_cells=n) for n in (4, 64)]
    forms += [dict(rank=r, has_filter=True, has_bias=True) for r in (4, 16, 64, 128, 256, 512, DCD_MAX_LATENT)]
    for cin, cout, groups, size in shapes:
        for kernel in ((1, 1), (3, 3), (5, 5), (7, 7)):
            for form in forms:
                if form.get("rank") and groups > 1:
                    continue  # DCD: dense convs only
                for dtype, prec in PRECISION_SETS:
                    yield ConvProblem(128, cin, cout, groups, kernel, size, dtype=dtype, precision=prec, **form)


def _regs_per_block(warps: int, regs: int) -> int:
    return warps * -(-regs * 32 // 256) * 256  # allocated per warp in units of 256


def test_every_configuration_the_launcher_can_pick_fits_each_targets_limits():
    """Shared memory per block (the model, which bounds the compiled figure: see the report test below), registers
    per thread (the ptxas ceiling) and per block, at least one resident CTA, on sm_80 and sm_90 - and with no target
    given (the interpreter, the roofline) a configuration that fits both."""
    seen_k = set()
    for p in _launcher_problems():
        seen_k.add(p.num_k)
        for batch in (1, 128):
            q = dataclasses.replace(p, batch=batch)
            for target in (*TARGETS.values(), None):
                t = choose_tiles(q, target.sms if target else None, target)
                for tg in (target,) if target else TARGETS.values():
                    need = shared_bytes(q, t, tg.arch)
                    assert need <= tg.smem_block, (tg.name, q, t, need)
                    assert t.maxnreg <= tg.regs_thread and _regs_per_block(t.warps, t.maxnreg) <= tg.regs_sm, (tg, t)
                    assert ctas_per_sm(tg, t.warps, t.maxnreg, need) >= 1, (tg.name, q, t)
                    assert t.bm >= 16 and t.bn >= 16 and t.bk >= 16  # tl.dot's smallest tile
                assert -(-q.iterations // t.splits) * t.splits >= q.iterations  # BK as the split-K steps count it
    assert seen_k == set(range(1, MAX_KERNELS + 1))


def test_condconv_8_experts_on_a_1x1_conv_in_tf32_fits_where_64x128x32_did_not():
    # MobileNetV2's 1x1 expansion with CondConv's 8 experts (its default on timm's EfficientNet-built MobileNetV2):
    # 64x128x32 in 3 stages needed 294,912 B on sm_80 and 303,104 B on sm_90, as compiled (docs/fused-kernels.json)
    p = ConvProblem(128, 96, 576, 1, (1, 1), (14, 14), num_k=8, precision="tf32")
    old = Tiles(64, 128, 32, 8, 3)
    assert (shared_bytes(p, old, 80), shared_bytes(p, old, 90)) == (294_912, 303_104)
    for target in TARGETS.values():
        t = choose_tiles(p, target.sms, target)
        assert (t.bm, t.bn, t.bk, t.stages) == (64, 64, 32, 3)
        assert shared_bytes(p, t, target.arch) <= target.smem_block
    k4 = dataclasses.replace(p, num_k=4)  # 4 experts: 163,840 B, inside both limits: the tile stays
    assert all(choose_tiles(k4, t.sms, t).bn == 128 for t in TARGETS.values())


def test_the_shared_memory_model_bounds_every_compiled_configuration_and_the_report_records_occupancy():
    report = json.loads(REPORT.read_text())
    assert {int(name[3:]) for name in report["targets"]} == set(TARGETS)
    for name, limits in report["targets"].items():
        assert limits["smem_block"] == TARGETS[int(name[3:])].smem_block
    worst = {}
    for row in report["configs"]:
        for name, res in row["archs"].items():
            arch = int(name[3:])
            target = TARGETS[arch]
            where = f"{name} {row['family']} {precision_class(row)} {row['BM']}x{row['BN']}x{row['BK']}"
            assert res["shared_bytes"] <= shared_bound(row, arch) == res["shared_bound"], where
            assert res["shared_bytes"] <= target.smem_block, where  # launches: Triton's OutOfResources check
            assert 0 < res["registers"] <= target.regs_thread, where
            assert _regs_per_block(row["num_warps"], res["registers"]) <= target.regs_sm, where
            assert res["ctas_per_sm"] == ctas_per_sm(target, row["num_warps"], res["registers"],
                                                     res["shared_bytes"]) >= 1, where
            worst[name] = max(worst.get(name, 0), res["shared_bytes"])
    assert set(worst) == {"sm_80", "sm_90"}


def test_occupancy_follows_the_cuda_occupancy_calculator():
    a100, h100 = TARGETS[80], TARGETS[90]
    assert ctas_per_sm(a100, 8, 255, 163_840) == 1  # 255 x 256 threads: the whole register file
    assert ctas_per_sm(h100, 8, 128, 50_000) == 2  # 128 registers: 2 x 8 warps; 2 x 51,072 B of 233,472
    assert ctas_per_sm(h100, 8, 128, 120_000) == 1  # shared memory limits
    assert ctas_per_sm(a100, 4, 32, 0) == 16  # threads: 2048 / 128
    assert ctas_per_sm(a100, 1, 16, 0) == 32  # the block limit
    assert ctas_per_sm(a100, 8, 64, 166_913) == 0  # over the per-block limit: cannot launch


@needs_ptxas
def test_the_issue_config_and_64_kernels_compile_within_the_limits_and_the_model():
    """The configurations the launcher now picks for CondConv's 8 experts (1x1, TF32) and for 64 kernels compile
    for sm_80 and sm_90 without spills, inside the target's shared memory and at most at the model's figure."""
    for k in (8, MAX_KERNELS):
        p = ConvProblem(128, 96, 576, 1, (1, 1), (14, 14), num_k=k, precision="tf32")
        for arch, target in TARGETS.items():
            t = choose_tiles(p, target.sms, target)
            key_json = json.dumps(compile_key(p, t), sort_keys=True)
            _check(key_json, arch)
            report = compile_report(key_json, arch)
            assert report.shared_bytes <= shared_bytes(p, t, arch) <= target.smem_block, (k, arch, t)
