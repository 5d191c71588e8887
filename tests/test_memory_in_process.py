"""Memory cells: CUDA measures in the runner's process (no subprocess start-up per cell), CPU keeps its fresh
subprocess; the memory kind says which (`Memory.processes`), the runner starts it (execution/processes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.measure_cell import run_cell
from dynconv_bench.execution.processes import workers
from dynconv_bench.measures import options_of
from dynconv_bench.measures.memory import Memory
from dynconv_bench.metrics.step_memory import measure_model, peak_memory


@pytest.mark.parametrize(("device", "expected"), [("cpu", 1), ("cuda", 0), ("cuda:1", 0)])
def test_where_a_measurement_runs(device: str, expected: int) -> None:
    assert Memory.processes(options_of("memory", {"device": device})) == expected


def _cell(device: str, batch_size: int) -> Cell:
    return Cell("t", "cifar_resnet8", "static", "static", {}, "memory",
                {"device": device, "batch_size": batch_size, "input_size": [3, 32, 32], "num_classes": 10})


def _no_subprocess(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError("a CUDA memory cell must not start a subprocess")


def test_cuda_cell_runs_in_process(monkeypatch) -> None:  # noqa: ANN001
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: see test_gpu.py")
    monkeypatch.setattr(workers, "run_isolated", _no_subprocess)
    out = run_cell(_cell("cuda", 2))
    assert out["status"] == "failed" and "CUDA requested" in out["error"] and out["values"]["peak_bytes"] is None
    values = out["values"]
    assert (values["device"], values["batch_size"], values["mode"]) == ("cuda", 2, "inference")


def test_cpu_cell_keeps_its_subprocess(monkeypatch) -> None:  # noqa: ANN001
    seen = []

    def fake(fn, cell, plugins, calibration, cuda=False, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append((fn, cell["options"]["batch_size"], calibration, cuda))
        return {"status": "ok", "peak_bytes": 1}

    monkeypatch.setattr(workers, "run_isolated", fake)
    out = run_cell(_cell("cpu", 3))
    assert out["values"]["peak_bytes"] == 1 and len(seen) == 1
    assert seen[0] == (workers._worker, 3, None, False)


def test_in_process_failures_are_results_and_threads_are_restored() -> None:
    threads = torch.get_num_threads()
    bad = peak_memory("cifar_resnet8", "no-such-variant", input_size=(3, 32, 32), threads=1)
    assert bad["status"] == "failed" and "unknown variant" in bad["error"] and bad["peak_bytes"] is None
    ok = peak_memory("cifar_resnet8", input_size=(3, 32, 32), num_classes=10, threads=1)
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
