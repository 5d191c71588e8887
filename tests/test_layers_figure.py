"""The per-layer figure states what it shows (issue 36.5): batch size, threads, what is summed, and the whole forward
of the same run beside the sum, with the reason the two differ."""

from __future__ import annotations

import re

from PIL import Image

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures import get_kind, records_of
from dynconv_bench.models.modelspec import ModelSpec
from dynconv_bench.reporting.figure_files import slug
from dynconv_bench.reporting.layers_figure import plot_layer_breakdown
from dynconv_bench.reporting.plots import make_plots
from dynconv_bench.reporting.rows import load_results


def _drawn(svg: str) -> str:
    return " ".join(" ".join(t.split()) for t in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S))


def test_the_figure_states_batch_threads_the_sum_and_the_whole_forward(tmp_path) -> None:  # noqa: ANN001
    layers = [{"layer": "conv1", "type": "ODConv", "time_ms": 60.0, "calls": 1},
              {"layer": "act", "type": "ReLU", "time_ms": 5.0, "calls": 2},  # one module called twice a forward
              {"layer": "fc", "type": "Linear", "time_ms": 60.0, "calls": 1}]
    paths = plot_layer_breakdown(layers, "r / odconv: per-layer latency", tmp_path, "l", "env", batch_size=16,
                                 threads=4, forward_ms=48.0, hooked_forward_ms=131.5)
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    drawn = _drawn(svg)  # drawn into the image itself, not only in the metadata
    assert "batch 16, 4 torch threads, CPU" in drawn
    assert "median per call x calls" in drawn
    assert "sum of the 3 layers 130.00 ms per forward; whole forward 48.00 ms (131.50 ms with the hooks)" in drawn
    meta = Image.open(next(p for p in paths if p.suffix == ".png")).text
    assert "(batch 16, 4 torch threads, CPU)" in meta["Description"]
    assert "the whole forward, timed in the same run without hooks, 48.00 ms" in meta["Description"]
    for why in ("each layer's median is taken on its own", "ops outside any module", "hooks' Python calls",
                "perf_counter hook before and after each leaf module", "no device sync"):
        assert why in meta["Description"], why
    assert "sum of the 3 layers 130.00 ms per forward" in meta["Title"]


def test_an_older_row_says_what_it_did_not_record(tmp_path) -> None:  # noqa: ANN001
    paths = plot_layer_breakdown([{"layer": "fc", "type": "Linear", "time_ms": 1.0}], "t", tmp_path, "l", "env")
    drawn = _drawn(next(p for p in paths if p.suffix == ".svg").read_text())
    assert "batch not recorded, threads not recorded" in drawn and "whole forward not recorded by this row" in drawn


def test_a_real_layers_cell_records_the_whole_forward_and_the_figure_shows_it(tmp_path) -> None:  # noqa: ANN001
    kind = get_kind("layers")
    opts = kind.options({"num_classes": 10, "input_size": [3, 32, 32], "repeats": 2, "batch_size": 3, "threads": 1})
    result = kind.measure(ModelSpec("cifar_resnet8", "static"), opts)
    assert result.batch_size == 3 and result.threads >= 1 and result.repeats == 2
    assert result.forward_ms > 0 and result.hooked_forward_ms > 0
    assert abs(result.total_ms - sum(r["time_ms"] * r["calls"] for r in result.layers)) < 1e-9
    recs = records_of("layers", opts.as_dict(), result.to_values())
    whole = {r.dim("hooks"): r.value for r in recs if r.metric == "layers_forward"}
    assert whole == {False: result.forward_ms, True: result.hooked_forward_ms}
    assert {r.dim("batch_size") for r in recs} == {3} and {r.dim("threads") for r in recs} == {result.threads}

    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"], "variants": ["static"],
                         "measure": {"layers": {"num_classes": 10, "input_size": [3, 32, 32], "repeats": 1,
                                                "batch_size": 2, "threads": 1}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(), progress=False)
    paths = make_plots(load_results(tmp_path / "p.sqlite", "p"), tmp_path / "plots", "p")
    svg = next(p for p in paths if p.name == f"{slug('p')}_layers_{slug('cifar_resnet8')}_{slug('static')}.svg")
    drawn = _drawn(svg.read_text())
    assert "batch 2, 1 torch thread, CPU" in drawn
    assert re.search(r"sum of the \d+ layers [\d.]+ ms per forward; whole forward [\d.]+ ms \([\d.]+ ms with the "
                     r"hooks\)", drawn), drawn
    title = Image.open(svg.with_suffix(".png")).text["Title"]
    assert title.startswith("cifar_resnet8 / static: per-layer latency (batch 2, 1 thread, deployed)")
