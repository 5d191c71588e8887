"""Memory cells: CUDA measures in this process (no subprocess start-up per cell), CPU keeps its fresh subprocess."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynconv_bench.metrics import memory
from dynconv_bench.metrics.memory import in_subprocess, measure_model, peak_memory


@pytest.mark.parametrize(("device", "isolate", "expected"), [
    ("cpu", None, True), ("cuda", None, False), ("cuda:1", None, False), ("cpu", False, False), ("cuda", True, True)])
def test_where_a_measurement_runs(device: str, isolate: bool | None, expected: bool) -> None:
    assert in_subprocess(device, isolate) is expected


def _no_subprocess(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError("a CUDA memory cell must not start a subprocess")


def test_cuda_cell_runs_in_process(monkeypatch) -> None:  # noqa: ANN001
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: see test_gpu.py")
    monkeypatch.setattr(memory, "run_isolated", _no_subprocess)
    out = peak_memory("cifar_resnet8", batch_size=2, input_size=(3, 32, 32), device="cuda", num_classes=10)
    assert out["status"] == "failed" and "CUDA requested" in out["error"] and out["peak_bytes"] is None
    assert (out["device"], out["batch_size"], out["mode"]) == ("cuda", 2, "inference")


def test_cpu_cell_keeps_its_subprocess(monkeypatch) -> None:  # noqa: ANN001
    seen = []

    def fake(fn, *args, timeout=None, cuda=False):  # noqa: ANN001, ANN002, ANN202
        seen.append((fn, args[1:], timeout, cuda))
        return {"status": "ok", "peak_bytes": 1}

    monkeypatch.setattr(memory, "run_isolated", fake)
    out = peak_memory("cifar_resnet8", batch_size=3, input_size=(3, 32, 32), num_classes=10, timeout=9.0)
    assert out["peak_bytes"] == 1 and len(seen) == 1
    assert seen[0] == (memory._worker, (3, (3, 32, 32), "inference", "cpu", 10, None), 9.0, False)


def test_in_process_failures_are_results_and_threads_are_restored() -> None:
    threads = torch.get_num_threads()
    bad = peak_memory("cifar_resnet8", "no-such-variant", isolate=False, input_size=(3, 32, 32), threads=1)
    assert bad["status"] == "failed" and "unknown variant" in bad["error"] and bad["peak_bytes"] is None
    ok = peak_memory("cifar_resnet8", isolate=False, input_size=(3, 32, 32), num_classes=10, threads=1)
    assert ok["status"] == "ok" and ok["threads"] == 1 and ok["peak_bytes"] >= 0
    assert ok["peak_total_bytes"] == ok["baseline_bytes"] + ok["peak_bytes"]
    assert torch.get_num_threads() == threads


class _Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        return self.fc(x)


@pytest.mark.parametrize(("mode", "calls"), [("inference", [(False, True)]), ("train", [(True, False)])])
def test_cpu_measures_the_first_step_as_before(mode: str, calls: list) -> None:
    """CPU semantics unchanged: no unmeasured step (that one exists on CUDA only), then one measured step."""
    probe = _Probe()
    out = measure_model(probe, 2, (4,), mode, torch.device("cpu"), 3)
    assert out["status"] == "ok" and probe.calls == calls
    assert (probe.fc.weight.grad is not None) is (mode == "train")
