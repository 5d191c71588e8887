"""Ahead-of-time compiles of the fused conv kernel for a GPU architecture, on any machine (no GPU needed).

Triton's own `triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))` with its bundled ptxas; the
report reads registers and spills from ptxas's `-v` log (printed by Triton when TRITON_DUMP_PTXAS_LOG is on) and
the main loop's instruction class from the SASS (nvdisasm): HGMMA (wgmma, sm_90), HMMA (mma.sync) or FFMA only.
`launcher_configs` lists what the launcher picks for a model: its fused calls are collected, not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch

from .triton_tiles import TARGETS, ConvProblem, Tiles, choose_tiles, compile_key, shared_bytes

__all__ = ["ARCHS", "BACKBONES", "KernelReport", "compile_report", "family", "launcher_configs", "model_problems",
           "precision_class", "representative", "shared_bound"]

# (architecture, SM count of the part the split-K rule sizes for): A100 SXM has 108 SMs, H100 SXM / H200 132; the
# launcher sizes its tiles for the device's limits (triton_tiles.TARGETS: shared memory per block and per SM)
ARCHS = {arch: t.sms for arch, t in TARGETS.items()}
BACKBONES = {"resnet18": 224, "resnet50": 224, "mobilenetv2_100": 224}
# compute dtype and fp32 dot precision: the three dtypes, fp32 with and without TF32
PRECISIONS = (("fp32", "tf32"), ("fp32", "ieee"), ("bf16", "ieee"), ("fp16", "ieee"))
_TORCH = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class KernelReport:
    """One compiled configuration: resources per thread and what the main loop multiplies with."""

    arch: int
    key: str  # the compile key as sorted JSON (constexprs, dtypes, warps, stages)
    registers: int
    spill_stores: int  # bytes
    spill_loads: int
    shared_bytes: int
    instructions: str  # 'wgmma', 'mma' or 'fma'
    counts: dict  # HGMMA / HMMA / FFMA instructions in the SASS

    @property
    def tensor_cores(self) -> bool:
        return self.instructions in ("wgmma", "mma")


def _kernel_fn():  # noqa: ANN202
    import triton

    from .triton_kernel import conv_kernel
    return triton.jit(conv_kernel)


@functools.cache
def compile_report(key_json: str, arch: int) -> KernelReport:
    """Compile one configuration (`compile_key` as sorted JSON) for sm_`arch`; cached for the process."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .triton_kernel import CONSTEXPRS, signature

    key = json.loads(key_json)
    fn = _kernel_fn()
    sig = signature(fn.arg_names, _TORCH[key["dtype"]], _TORCH[key["out_dtype"]], _TORCH[key["dtype"]])
    constexprs = {k: key[k] for k in CONSTEXPRS}
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a disk-cache hit would skip ptxas and its log
        kernel = triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", arch, 32),
                                options={"num_warps": key["num_warps"], "num_stages": key["num_stages"],
                                         "maxnreg": key["maxnreg"]})
    text = log.getvalue()
    regs = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if regs is None or spills is None:
        raise RuntimeError(f"no ptxas resource line for {key_json} on sm_{arch}:\n{text[-2000:]}")
    counts = _sass_counts(kernel.asm["cubin"], kernel.asm["ptx"])
    kind = "wgmma" if counts["HGMMA"] else "mma" if counts["HMMA"] else "fma"
    return KernelReport(arch, key_json, int(regs.group(1)), int(spills.group(1)), int(spills.group(2)),
                        int(kernel.metadata.shared), kind, counts)


def _sass_counts(cubin: bytes, ptx: str) -> dict:
    """Tensor-core and FMA instructions in the SASS (nvdisasm); from the PTX when nvdisasm is absent."""
    from triton import knobs

    try:
        tool = knobs.nvidia.nvdisasm.path
    except Exception:  # noqa: BLE001 (a Triton build without its bundled tools)
        tool = None
    if tool and os.path.exists(tool):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            sass = subprocess.run([tool, "-c", f.name], capture_output=True, text=True, check=True).stdout
        return {op: len(re.findall(rf"\b{op}\b", sass)) for op in ("HGMMA", "HMMA", "FFMA")}
    return {"HGMMA": len(re.findall(r"\bwgmma\.mma_async", ptx)), "HMMA": len(re.findall(r"\bmma\.sync", ptx)),
            "FFMA": len(re.findall(r"\bfma\.rn\.f32", ptx))}


def model_problems(backbone: str, variant: str, cfg: dict | None = None, input_size: int = 224) -> list[ConvProblem]:
    """The fused calls of a deployed model's inference forward at batch 1 (fp32), collected without running them."""
    from .convert import create_model, deploy
    from .per_sample_conv import use_strategy
    from .triton_conv import collect_problems

    model = deploy(create_model(backbone, variant, num_classes=1000, **(cfg or {})))
    with use_strategy("fused"), collect_problems() as problems, torch.no_grad():
        model(torch.randn(1, 3, input_size, input_size))
    return problems


def launcher_configs(problems: list[ConvProblem], batches: tuple[int, ...] = (1, 128),
                     precisions: tuple[tuple[str, str], ...] = PRECISIONS, archs: dict = ARCHS) -> dict[str, set[int]]:
    """Distinct compile keys (sorted JSON) the launcher picks for these problems, with the archs each runs on."""
    out: dict[str, set[int]] = {}
    for p in problems:
        for batch in batches:
            for dtype, prec in precisions:
                q = dataclasses.replace(p, batch=batch, dtype=dtype, precision=prec if dtype == "fp32" else "ieee")
                for arch, sms in archs.items():
                    target = dataclasses.replace(TARGETS[arch], sms=sms) if arch in TARGETS else None
                    key = json.dumps(compile_key(q, choose_tiles(q, sms, target)), sort_keys=True)
                    out.setdefault(key, set()).add(arch)
    return out


def family(key: dict) -> str:
    """The kernel form a configuration compiles: 'mixture' (K > 1), 'shared' (one kernel), 'cells', 'lowrank'."""
    if key["HAS_LOWRANK"]:
        return "lowrank"
    return "cells" if key["MODE"] == 1 else "mixture" if key["NUM_K"] > 1 else "shared"


def precision_class(key: dict) -> str:
    """'tf32', 'ieee' (fp32 on FMA units), 'bf16' or 'fp16'."""
    return key["PREC"] if key["dtype"] == "fp32" else key["dtype"]


def representative(configs: dict[str, set[int]], picks: dict[int, tuple[str, ...]]) -> list[tuple[str, int]]:
    """Per kernel family and (arch, precision) in `picks`, the configuration with the largest tile (the most
    registers): a small set that still compiles every code path of the kernel for every architecture."""
    best: dict[tuple, tuple[tuple, str]] = {}
    for key_json, archs in configs.items():
        key = json.loads(key_json)
        size = (key["BM"] * key["BN"] * key["BK"], key["NUM_K"], key["HAS_CHANNEL"] + key["HAS_FILTER"]
                + key["HAS_SPATIAL"] + key["HAS_BIAS"], key["out_dtype"] == "fp32", key_json)
        for arch in archs:
            if precision_class(key) in picks.get(arch, ()):
                slot = (family(key), arch, precision_class(key))
                if slot not in best or size > best[slot][0]:
                    best[slot] = (size, key_json)
    return sorted((key_json, slot[1]) for slot, (_, key_json) in best.items())


def shared_bound(key: dict, arch: int) -> int:
    """`triton_tiles.shared_bytes` of a compile key: the shared memory the model allows that configuration."""
    p = ConvProblem(1, 1, 1, 1, (key["KH"], key["KW"]), (1, 1), key["MODE"], key["NUM_K"], 0, key["HAS_BIAS"],
                    key["HAS_CHANNEL"], key["HAS_FILTER"], key["HAS_SPATIAL"], key["LP"] if key["HAS_LOWRANK"] else 0,
                    key["dtype"], key["PREC"])
    t = Tiles(key["BM"], key["BN"], key["BK"], key["num_warps"], key["num_stages"], 1, key["maxnreg"])
    return shared_bytes(p, t, arch)
