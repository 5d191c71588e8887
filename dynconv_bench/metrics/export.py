"""Deployability: does a model export (torch.export, ONNX + onnxruntime, torch.compile, TorchScript trace)?

Each target is tried on the model as given (callers pass the deployed form), with the batch as a
dynamic dimension where the exporter supports it. An entry records ok/failed with the error's
first line, the max abs difference to eager at batch 1 and 4 on a fixed input, and for ONNX the
onnxruntime-vs-eager throughput ratio timed in this process with the same thread count.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..files import replacing
from ..models.layers import recomputing_batchnorm
from .timing import fixed_threads, time_runs

TARGETS = ("torch_export", "onnx", "compile", "torchscript")
BATCH_SIZES = (1, 4)
OPSET = 18  # the ONNX opset written (the task asks 17+; 18 is the dynamo exporter's native opset)
# max abs difference to eager, relative to the largest eager output, below which an export counts as equal
# (fp32 through ~50 layers, where the exported graph may sum in another order than eager)
TOLERANCE = 1e-3
EXTRA_HINT = "install the optional extra: pip install 'dynconv-bench[deploy]'"


def require_onnx() -> None:
    """Raise a UserError naming the `deploy` extra when onnx, onnxscript or onnxruntime is missing."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: {EXTRA_HINT}")


def fixed_inputs(input_size: Sequence[int], batch_sizes: Sequence[int] = BATCH_SIZES,
                 seed: int = 0) -> dict[int, torch.Tensor]:
    """The same random inputs for every target and run: batch size -> tensor."""
    gen = torch.Generator().manual_seed(seed)
    return {b: torch.randn(b, *input_size, generator=gen) for b in batch_sizes}


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, input_size: Sequence[int], batches: int = 4, batch_size: int = 8,
                        seed: int = 1) -> int:
    """Set every BatchNorm's running statistics to the mean over `batches` random batches (train-mode passes).

    A freshly initialised network in eval mode normalises with mean 0 / variance 1 and its outputs
    drift to 1e-28 or blow up with depth (MobileNetV2 with dynamic convs: outputs of 7e-28, differences of
    0.05 between batch sizes): no numerical comparison means anything there. Calibrated, outputs are O(1)
    as in a trained model. Returns the number of BatchNorms calibrated; the model's mode is restored.
    """
    gen = torch.Generator().manual_seed(seed)
    with recomputing_batchnorm(model) as norms:
        for _ in range(batches if norms else 0):
            model(torch.randn(batch_size, *input_size, generator=gen))
    return norms


def relative_worst(diffs: dict[str, float], scale: dict[str, float]) -> float:
    """The largest difference to eager over batch sizes, each relative to eager's largest |output| there."""
    return max(d / max(scale[b], 1e-30) for b, d in diffs.items())


def first_line(exc: BaseException) -> str:
    """`Type: first non-empty line of the message` of the innermost cause (exporter errors run to pages)."""
    while exc.__cause__ is not None and str(exc.__cause__).strip():
        exc = exc.__cause__
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 300 else text[:300] + " ..."


def _diffs(run: Callable[[torch.Tensor], torch.Tensor], inputs: dict[int, torch.Tensor],
           ref: dict[int, torch.Tensor]) -> dict[str, float]:
    out = {}
    with torch.no_grad():
        for b, x in inputs.items():
            y = run(x)
            if tuple(y.shape) != tuple(ref[b].shape):
                raise RuntimeError(f"output shape {tuple(y.shape)} at batch {b}, eager gives {tuple(ref[b].shape)}")
            out[str(b)] = float((y.float() - ref[b]).abs().max())
    return out


def _batch_dim(inputs: dict[int, torch.Tensor]) -> Any:
    return torch.export.Dim("batch", min=1, max=max(1024, *inputs))


def _largest(inputs: dict[int, torch.Tensor]) -> torch.Tensor:
    return inputs[max(inputs)]


def try_torch_export(model: nn.Module, inputs: dict[int, torch.Tensor], ref: dict[int, torch.Tensor]) -> dict:
    """torch.export with a dynamic batch; failing that, one static export per batch size."""
    try:
        ep = torch.export.export(model, (_largest(inputs),), dynamic_shapes=({0: _batch_dim(inputs)},))
        return {"dynamic_batch": True, "max_abs_diff": _diffs(ep.module(), inputs, ref)}
    except Exception as exc:
        dynamic_error = first_line(exc)
    diffs = {}
    for b, x in inputs.items():
        ep = torch.export.export(model, (x,))
        diffs.update(_diffs(ep.module(), {b: x}, ref))
    return {"dynamic_batch": False, "dynamic_error": dynamic_error, "max_abs_diff": diffs}


def export_onnx(model: nn.Module, path: str | Path, inputs: dict[int, torch.Tensor],
                opset: int = OPSET) -> bool:
    """Write `model` as ONNX (dynamo exporter) with a dynamic batch, else static; True when the batch is dynamic."""
    require_onnx()
    import warnings

    x = _largest(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=True, external_data=False,
                              dynamic_shapes=({0: _batch_dim(inputs)},), verbose=False)
            return True
        except Exception:
            if len(inputs) > 1:
                raise  # a static graph cannot serve every batch size asked for
            torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=True, external_data=False, verbose=False)
            return False


def ort_session(path: str | Path, threads: int) -> Any:
    """A CPU onnxruntime session with `threads` intra-op threads (the eager thread count)."""
    require_onnx()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_runner(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def try_onnx(model: nn.Module, inputs: dict[int, torch.Tensor], ref: dict[int, torch.Tensor], threads: int,
             min_time: float, warmup: int) -> dict:
    """Export to ONNX, run with onnxruntime (CPU); time ORT against eager on the largest batch."""
    with tempfile.TemporaryDirectory(prefix="dynconv-onnx-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        dynamic = export_onnx(model, path, inputs)
        size = os.path.getsize(path)
        run = ort_runner(ort_session(path, threads))
        out = {"dynamic_batch": dynamic, "opset": OPSET, "file_bytes": size, "max_abs_diff": _diffs(run, inputs, ref)}
        x = _largest(inputs)
        cpu = torch.device("cpu")
        with torch.inference_mode():
            t_eager = time_runs(lambda: model(x), cpu, warmup, min_time, min_runs=3)
        t_ort = time_runs(lambda: run(x), cpu, warmup, min_time, min_runs=3)
    eager_s, ort_s = _median(t_eager), _median(t_ort)
    out.update(ort_vs_eager=eager_s / ort_s, eager_ms=1000 * eager_s, ort_ms=1000 * ort_s, timed_batch=int(x.shape[0]),
               runs=[len(t_eager), len(t_ort)])
    return out


def _median(times: list[float]) -> float:
    s = sorted(times)
    return s[len(s) // 2]


def try_compile(model: nn.Module, inputs: dict[int, torch.Tensor], ref: dict[int, torch.Tensor]) -> dict:
    """torch.compile (inductor, CPU): the largest batch marked dynamic, then every batch size."""
    import logging

    import torch._dynamo

    logging.getLogger("torch._guards").setLevel(logging.CRITICAL)  # failures are recorded, not logged
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="inductor")
    x = _largest(inputs).clone()
    torch._dynamo.maybe_mark_dynamic(x, 0)
    try:
        with torch.no_grad():
            compiled(x)
        return {"max_abs_diff": _diffs(compiled, inputs, ref)}
    finally:
        torch._dynamo.reset()


def try_torchscript(model: nn.Module, inputs: dict[int, torch.Tensor], ref: dict[int, torch.Tensor]) -> dict:
    """torch.jit.trace on the largest batch, then run at every batch size (the trace must not bake it in)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _largest(inputs), check_trace=False)
        return {"max_abs_diff": _diffs(traced, inputs, ref)}


def deploy_matrix(model: nn.Module, input_size: Sequence[int], targets: Sequence[str] = TARGETS,
                  batch_sizes: Sequence[int] = BATCH_SIZES, threads: int | None = None, min_time: float = 0.5,
                  warmup: int = 2, tolerance: float = TOLERANCE, seed: int = 0) -> dict[str, Any]:
    """Try each target on `model` (eval mode); {target: {status, error, max_abs_diff, ...}} plus the settings.

    A target is ok when it exports and runs at every batch size with max abs difference <= `tolerance`
    times eager's largest |output| at that batch size.
    """
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise UserError(f"unknown deploy target(s) {', '.join(bad)}; valid: {', '.join(TARGETS)}")
    if "onnx" in targets:
        require_onnx()
    model = model.eval()
    inputs = fixed_inputs(input_size, batch_sizes, seed)
    out: dict[str, Any] = {"targets": {}, "batch_sizes": list(batch_sizes), "tolerance": tolerance}
    with fixed_threads(threads) as n_threads:
        out["threads"] = n_threads
        with torch.no_grad():
            ref = {b: model(x).float() for b, x in inputs.items()}
        # the scale the differences are read against (random-init logits can be tiny)
        out["eager_max_abs"] = {str(b): float(y.abs().max()) for b, y in ref.items()}
        for target in targets:
            t0 = time.perf_counter()
            try:
                if target == "torch_export":
                    entry = try_torch_export(model, inputs, ref)
                elif target == "onnx":
                    entry = try_onnx(model, inputs, ref, n_threads, min_time, warmup)
                elif target == "compile":
                    entry = try_compile(model, inputs, ref)
                else:
                    entry = try_torchscript(model, inputs, ref)
                worst = relative_worst(entry["max_abs_diff"], out["eager_max_abs"])
                entry["max_rel_diff"] = worst
                if worst <= tolerance:
                    entry = {"status": "ok", "error": None, **entry}
                else:
                    entry = {"status": "failed", "error": f"outputs differ from eager: max abs diff "
                                                          f"{max(entry['max_abs_diff'].values()):.3g}, "
                                                          f"{worst:.3g} of the output scale > {tolerance:g}", **entry}
            except Exception as exc:  # the failure is the finding: record it, go on with the next target
                entry = {"status": "failed", "error": first_line(exc)}
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            out["targets"][target] = entry
    out["ok"] = [t for t, e in out["targets"].items() if e["status"] == "ok"]
    return out


def export_checked(model: nn.Module, path: str | Path, input_size: Sequence[int],
                   batch_sizes: Sequence[int] = BATCH_SIZES, tolerance: float = TOLERANCE,
                   threads: int | None = None) -> dict[str, Any]:
    """Write `model` as ONNX to `path` and check it with onnxruntime against eager at `batch_sizes`.

    Returns {path, dynamic_batch, max_abs_diff, bytes}; raises RuntimeError when outputs differ by more
    than `tolerance` times eager's largest |output|
    (the file is then removed, so a written file is always a checked one).
    """
    require_onnx()
    model = model.eval()
    inputs = fixed_inputs(input_size, batch_sizes)
    path = Path(path)
    with fixed_threads(threads) as n_threads:
        with torch.no_grad():
            ref = {b: model(x).float() for b, x in inputs.items()}
        with replacing(path, "ONNX file") as tmp:  # a unique name beside it; renamed only once checked
            dynamic = export_onnx(model, tmp, inputs)
            diffs = _diffs(ort_runner(ort_session(tmp, n_threads)), inputs, ref)
            worst = relative_worst(diffs, {str(b): float(y.abs().max()) for b, y in ref.items()})
            if worst > tolerance:
                raise RuntimeError(f"onnxruntime outputs differ from eager: {worst:.3g} of the output scale > "
                                   f"{tolerance:g} (max abs diff per batch: {diffs})")
    return {"path": str(path), "dynamic_batch": dynamic, "max_abs_diff": diffs, "bytes": path.stat().st_size}
