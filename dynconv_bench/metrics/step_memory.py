"""Peak memory of one forward (or one training step), measured in the calling process; failures are results.

CPU method: build the model, the input and (for training) the optimizer, run the garbage collector, reset the
kernel's peak-RSS mark (`/proc/self/clear_refs` <- "5", Linux) and read the resident size; then run one forward
(inference mode) or one training step (forward, cross-entropy, backward, SGD with momentum) and read the peak
RSS (`VmHWM`). peak_bytes = peak - before: the activations, gradients, optimizer state and workspaces the step
needs on top of the built model. Where the mark cannot be reset, the `ru_maxrss` delta is used (then the model
build's own peak may hide a smaller step peak; `method` says which was used). Only a fresh process gives a
reliable CPU figure (a long-lived one's allocator reuses memory freed by earlier work, so its peak need not
move): the `memory` kind asks the runner for one per CPU cell (`Memory.processes`, run by
dynconv_bench.execution.processes); a caller of its own runs `peak_memory` through `run_isolated`.
CUDA method: one unmeasured step, then `torch.cuda.max_memory_allocated` after emptying the cache and resetting
the allocator's peak: bytes the step allocates on top of the model and input. The allocator counts exactly what
is allocated, whatever ran before, so no fresh process is needed (a subprocess per cell cost ~10 s of CUDA
start-up); the model, input and cache are freed afterwards.
"""

from __future__ import annotations

import functools
import gc
import resource
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.modelspec import ModelSpec


def status_kib(key: str) -> int | None:
    """A `/proc/self/status` field in KiB (VmRSS, VmHWM), None where the file or field is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, looked up once (find_library runs ldconfig); None where the C library has none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Hand the C allocator's free pages back to the OS (glibc `malloc_trim(0)`), so that RSS counts live memory and
    not what earlier work in this process freed but kept; False where it is not glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) of this process; False where Linux's clear_refs is unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _measure(spec: ModelSpec, batch_size: int, input_size: tuple[int, ...], mode: str, device: str,
             num_classes: int, threads: int | None) -> dict[str, Any]:
    dev = torch.device(device)
    out: dict[str, Any] = {"status": "failed", "error": None, "peak_bytes": None, "mode": mode,
                           "device": str(dev), "batch_size": batch_size, "input_size": list(input_size),
                           "threads": None, "backbone": spec.backbone, "variant": spec.variant}
    if dev.type == "cuda" and not torch.cuda.is_available():
        out["error"] = "CUDA requested but torch.cuda.is_available() is False (no GPU or no CUDA driver)"
        return out
    before = torch.get_num_threads()
    try:  # restored: this runs in the caller's process
        if threads is not None:
            torch.set_num_threads(threads)
        out["threads"] = torch.get_num_threads()
        model = spec.build(num_classes=num_classes)
        return {**out, **measure_model(model, batch_size, input_size, mode, dev, num_classes)}
    finally:
        torch.set_num_threads(before)


def measure_model(model: nn.Module, batch_size: int, input_size: tuple[int, ...], mode: str, dev: torch.device,
                  num_classes: int) -> dict[str, Any]:
    """{status, error, peak_bytes, baseline_bytes, peak_total_bytes, method} of one step of `model` on `dev`.

    On CUDA one unmeasured step runs first (eval forward, or forward+backward without an optimizer step):
    per-sample strategies are tuned and library workspaces (cuBLAS, per thread) exist before the peak is
    reset, so no cell's figure depends on what ran before it in the process.
    """
    model = model.to(dev)
    x = torch.randn(batch_size, *input_size, device=dev)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    cuda = dev.type == "cuda"
    try:
        if cuda:
            _unmeasured_step(model, x, y, mode)
        opt = None
        if mode == "train":
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        else:
            model.eval()
        gc.collect()
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            method = "cuda max_memory_allocated"
        elif reset_peak_rss() and status_kib("VmHWM") is not None:
            before = status_kib("VmRSS") * 1024
            method = "VmHWM after clear_refs"
        else:
            before = _maxrss_bytes()
            method = "ru_maxrss delta"
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            with torch.inference_mode():
                model(x)
        if cuda:
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev)
        elif method.startswith("VmHWM"):
            peak = status_kib("VmHWM") * 1024
        else:
            peak = _maxrss_bytes()
    except Exception as exc:  # e.g. out of memory: a failed result
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000], "peak_bytes": None}
    return {"status": "ok", "error": None, "peak_bytes": max(int(peak - before), 0), "baseline_bytes": int(before),
            "peak_total_bytes": int(peak), "method": method}


def _unmeasured_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str) -> None:
    if mode == "train":
        model.train()
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode():
            model.eval()(x)


def peak_memory(model: ModelSpec | str, variant: str = "static", cfg: dict[str, Any] | None = None,
                batch_size: int = 1, input_size: tuple[int, ...] = (3, 224, 224), mode: str = "inference",
                device: str = "cpu", num_classes: int = 1000, threads: int | None = None,
                plugins: tuple[str, ...] = ()) -> dict[str, Any]:
    """Peak extra memory of one forward / training step, in this process (see the module doc for CPU figures).

    `model` is a ModelSpec, or a backbone name converted by `variant` with `cfg` (`plugins` register it).
    """
    spec = model if isinstance(model, ModelSpec) else ModelSpec(model, variant, cfg or {}, tuple(plugins))
    if mode not in ("inference", "train"):
        raise UserError(f"unknown mode {mode!r}; valid: inference, train")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    try:
        out = _measure(spec, batch_size, tuple(input_size), mode, device, num_classes, threads)
    except Exception as exc:  # e.g. an unknown variant: a failed result
        out = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        gc.collect()  # the model, its input and any out-of-memory traceback are gone: hand their memory back
        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
    out.setdefault("peak_bytes", None)
    out.setdefault("mode", mode)
    out.setdefault("batch_size", batch_size)
    out.setdefault("device", device)
    return out
