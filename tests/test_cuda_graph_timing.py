"""CUDA-graph timing (metrics/timing.py `cuda_graph=True`): what runs without a GPU; the replay itself is in
test_gpu.py."""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest
import torch
from torch import nn

from dynconv_bench.errors import UserError
from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.measure_cell import run_cell
from dynconv_bench.measures import records_of
from dynconv_bench.measures.speed import speed_setting
from dynconv_bench.metrics import timing
from dynconv_bench.metrics.timing import capture_cuda_graph, measure_inference


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())


def test_cuda_graph_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="cuda_graph needs device 'cuda'.*got 'cpu'"):
        measure_inference(_tiny(), 1, (3, 8, 8), device="cpu", cuda_graph=True)


@pytest.mark.parametrize(("mode", "compile", "message"), [
    ("train", False, "cuda_graph times inference only"), ("inference", True, "cuda_graph and compile")])
def test_cuda_graph_rejects_train_and_compile(mode: str, compile: bool, message: str) -> None:
    with pytest.raises(UserError, match=message):
        timing.check_cuda_graph(mode, torch.device("cuda"), compile)


def test_the_kind_and_the_harness_share_one_rule() -> None:
    """The speed kind checks a cell with `timing.check_cuda_graph`, the harness's own rule: interleaving too."""
    with pytest.raises(UserError, match="interleave and cuda_graph cannot be combined"):
        timing.check_cuda_graph("inference", "cuda", False, interleave=2)
    cell = Cell("t", "cifar_resnet8", "static", "static", {}, "speed", {
        "device": "cuda", "cuda_graph": True, "interleave": 2, "processes": 0, "batch_size": 1, "input_size": [3, 32, 32]})
    out = run_cell(cell)
    assert out["status"] == "failed" and "interleave and cuda_graph cannot be combined" in out["error"]


def test_result_says_whether_a_graph_was_timed() -> None:
    eager = measure_inference(_tiny(), 1, (3, 8, 8), warmup=0, min_time=0.0, min_runs=1)
    assert eager.ok and eager.to_values()["cuda_graph"] is False
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the replay is tested in test_gpu.py")
    graph = measure_inference(_tiny(), 1, (3, 8, 8), device="cuda", cuda_graph=True)
    assert graph.status == "failed" and "CUDA" in graph.error and graph.to_values()["cuda_graph"] is True


def test_speed_cell_with_cuda_graph_on_cpu_fails_with_the_reason() -> None:
    cell = Cell("t", "cifar_resnet8", "static", "static", {}, "speed",
                {"device": "cpu", "cuda_graph": True, "batch_size": 1, "input_size": [3, 32, 32]})
    out = run_cell(cell)
    assert out["status"] == "failed" and "cuda_graph needs device 'cuda'" in out["error"]


def test_graph_records_are_a_column_apart_from_eager() -> None:
    opts = {"device": "cuda", "batch_size": 1}
    eager = records_of("speed", opts, {"throughput": 500.0, "latency_ms": 2.0})
    graph = records_of("speed", {**opts, "cuda_graph": True}, {"throughput": 2000.0, "latency_ms": 0.5})
    assert [r.label for r in eager] == ["infer cuda b1 (img/s)", "latency cuda b1 (ms)"]
    assert [r.label for r in graph] == ["infer cuda graph b1 (img/s)", "latency cuda graph b1 (ms)"]
    # a frame of both has NaN where a row lacks the dimension: that row is eager
    frame = pd.DataFrame([{**dict(r.dims), "value": r.value} for r in eager + graph])
    assert [speed_setting(row) for _, row in frame.iterrows()] == ["cuda", "cuda", "cuda graph", "cuda graph"]


class _FakeCuda:
    """Stands in for torch.cuda's stream and graph API, logging the order of calls."""

    def __init__(self) -> None:
        self.log: list[str] = []
        fake = self

        class Stream:
            def __init__(self, device: torch.device) -> None:
                fake.log.append("stream")

            def wait_stream(self, other: object) -> None:
                fake.log.append("wait")

        class Graph:
            def replay(self) -> None:
                fake.log.append("replay")

        @contextlib.contextmanager
        def stream(s: object):  # noqa: ANN202
            fake.log.append("on-side")
            yield
            fake.log.append("off-side")

        @contextlib.contextmanager
        def graph(g: object):  # noqa: ANN202
            fake.log.append("capture-begin")
            yield
            fake.log.append("capture-end")

        self.Stream, self.CUDAGraph, self.stream, self.graph = Stream, Graph, stream, graph
        self.current_stream = lambda device: Stream(device)


def test_capture_warms_up_on_a_side_stream_then_replays_without_python(monkeypatch) -> None:  # noqa: ANN001
    fake = _FakeCuda()
    for name in ("Stream", "CUDAGraph", "stream", "graph", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    calls = []

    def step() -> torch.Tensor:
        calls.append(len(fake.log))
        fake.log.append("step")
        return torch.full((1,), float(len(calls)))

    replay = capture_cuda_graph(step, torch.device("cuda"), warmup=3)
    out = [replay(), replay()]
    assert fake.log == ["stream", "stream", "wait", "on-side", "step", "step", "step", "off-side", "stream",
                        "wait", "capture-begin", "step", "capture-end", "replay", "replay"]
    assert len(calls) == 4 and all(o is out[0] and o.item() == 4.0 for o in out)  # the captured output
