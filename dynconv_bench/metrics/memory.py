"""Peak memory of one forward (or one training step), measured in a fresh subprocess.

CPU method: in a spawned process, build the model, the input and (for training) the optimizer, run
the garbage collector, reset the kernel's peak-RSS mark (`/proc/self/clear_refs` <- "5", Linux) and
read the resident size; then run one forward (inference mode) or one training step (forward,
cross-entropy, backward, SGD with momentum) and read the peak RSS (`VmHWM`). peak_bytes = peak - before:
the activations, gradients, optimizer state and workspaces the step needs on top of the built model.
Where the mark cannot be reset, the `ru_maxrss` delta is used (then the model build's own peak may
hide a smaller step peak; `method` says which was used).
CUDA method: `torch.cuda.max_memory_allocated` after resetting the allocator's peak (bytes the step
allocates on top of the model and input).
"""

from __future__ import annotations

import gc
import resource
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..execution.isolate import run_isolated
from ..models.modelspec import ModelSpec


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _worker(spec: ModelSpec, batch_size: int, input_size: tuple[int, ...], mode: str, device: str,
            num_classes: int, threads: int | None) -> dict[str, Any]:
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    out: dict[str, Any] = {"status": "failed", "error": None, "peak_bytes": None, "mode": mode,
                           "device": str(dev), "batch_size": batch_size, "input_size": list(input_size),
                           "threads": torch.get_num_threads(), "backbone": spec.backbone, "variant": spec.variant}
    if dev.type == "cuda" and not torch.cuda.is_available():
        out["error"] = "CUDA requested but torch.cuda.is_available() is False (no GPU or no CUDA driver)"
        return out
    model = spec.build(num_classes=num_classes).to(dev)
    x = torch.randn(batch_size, *input_size, device=dev)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    opt = None
    if mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        model.eval()
    gc.collect()
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        method = "cuda max_memory_allocated"
    elif _reset_peak_rss() and _status_kib("VmHWM") is not None:
        before = _status_kib("VmRSS") * 1024
        method = "VmHWM after clear_refs"
    else:
        before = _maxrss_bytes()
        method = "ru_maxrss delta"
    try:
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
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = _maxrss_bytes()
    except Exception as exc:  # e.g. out of memory: a failed result
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        return out
    out.update(status="ok", peak_bytes=max(int(peak - before), 0), baseline_bytes=int(before),
               peak_total_bytes=int(peak), method=method)
    return out


def peak_memory(model: ModelSpec | str, variant: str = "static", cfg: dict[str, Any] | None = None,
                batch_size: int = 1, input_size: tuple[int, ...] = (3, 224, 224), mode: str = "inference",
                device: str = "cpu", num_classes: int = 1000, threads: int | None = None,
                plugins: tuple[str, ...] = (), timeout: float | None = None) -> dict[str, Any]:
    """Peak extra memory of one forward / training step in a fresh subprocess (see module doc).

    `model` is a ModelSpec, or a backbone name converted by `variant` with `cfg` (`plugins` register it).
    """
    spec = model if isinstance(model, ModelSpec) else ModelSpec(model, variant, cfg or {}, tuple(plugins))
    if mode not in ("inference", "train"):
        raise UserError(f"unknown mode {mode!r}; valid: inference, train")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    out = run_isolated(_worker, spec, batch_size, tuple(input_size), mode, device, num_classes, threads,
                       timeout=timeout, cuda=device.startswith("cuda"))
    out.setdefault("peak_bytes", None)
    out.setdefault("mode", mode)
    out.setdefault("batch_size", batch_size)
    out.setdefault("device", device)
    return out
