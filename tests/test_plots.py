"""Plots: every figure is written as PNG, SVG (real text) and PDF, with no caption drawn, per environment, under
file names that keep labels apart. The trade-off figure itself: tests/test_tradeoff_figure.py."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from PIL import Image

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures.layers import layer_latency
from dynconv_bench.reporting.environments import environment_sections
from dynconv_bench.reporting.figure_files import slug
from dynconv_bench.reporting.layers_figure import plot_layer_breakdown
from dynconv_bench.reporting.plots import make_plots
from dynconv_bench.reporting.rows import load_results, metric_rows


def _fake(cell: dict, plugins: tuple = ()) -> dict:
    v, o = cell["variant"], cell["options"]
    k = {"static": 1.0, "static-se": 1.2}[v]
    values = {"params": {"total": int(1e6 * k)}, "macs": {"macs": int(4e7 * k), "overhead_macs": 0},
              "speed": {"status": "ok", "throughput": 100.0 * o.get("batch_size", 1) / k, "latency_ms": 10 * k},
              "accuracy": {"top1": 90.0 + 2 * k + o.get("seed", 0)},
              "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d" if i % 2 else "ReLU", "time_ms": 0.1 * i,
                                     "calls": 1} for i in range(30)]}}[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box", "torch": "2.x"},
            "started": None, "finished": None}


def test_make_plots_writes_png_and_svg(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"params": {}, "macs": {}, "speed": {"batch_sizes": [1, 4, 16]},
                                     "accuracy": {"seeds": [0, 1]}, "layers": {"variants": ["static-se"]}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(fn=_fake), progress=False)
    paths = make_plots(load_results(tmp_path / "p.sqlite", "p"), tmp_path / "plots", "p")
    names = sorted(p.name for p in paths)
    p, r8, digits = slug("p"), slug("cifar_resnet8"), slug("digits")
    stems = {"params": f"{p}_acc-vs-params_{r8}_{digits}", "throughput": f"{p}_acc-vs-throughput_{r8}_{digits}"}
    assert names == sorted(f"{stem}.{ext}" for ext in ("png", "svg", "pdf") for stem in [
        *stems.values(), f"{p}_acc-vs-macs_{r8}_{digits}", f"{p}_throughput-vs-batch_{r8}_{slug('cpu')}_inference",
        f"{p}_layers_{r8}_{slug('static-se')}"])
    for path in paths:
        data = path.read_bytes()
        assert data.startswith({".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}[path.suffix])
        if path.suffix == ".pdf":  # text embedded as TrueType (editable), never as Type 3 glyph drawings
            assert b"/FontFile2" in data and b"/Type3" not in data
    svg = (tmp_path / "plots" / f"{stems['params']}.svg").read_text()
    texts = [" ".join(t.split()) for t in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S)]
    assert {"Pareto front", "static-se", "static"} <= set(texts)  # real <text>, not glyph paths
    assert "host box" in svg and not any("host box" in t for t in texts)  # in the metadata, not drawn
    assert "cifar_resnet8 on digits: accuracy vs params" not in texts  # the title leads the reports' caption
    svg = (tmp_path / "plots" / f"{stems['throughput']}.svg").read_text()
    # the largest batch's record, absolute (the fake rows have no in-cell ratio) and from one run
    assert "inference throughput, cpu, batch 16 (images/s, absolute: one run) (higher is better)" in svg
    # two seeds: their min-max, never a t interval over two values
    assert "95% t interval (min-max for 2 seeds)" in svg
    assert "Error bars: the two seeds' min-max where a variant has 2 seeds (no t interval over 2)." in svg
    assert not any("Error bars" in t for t in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S))  # no caption
    meta = Image.open(tmp_path / "plots" / f"{stems['params']}.png").text
    assert (meta["Suite"], meta["Backbone"], meta["Title"]) == ("p", "cifar_resnet8",
                                                                "cifar_resnet8 on digits: accuracy vs params")
    assert meta["Description"].startswith("Error bars: the two seeds' min-max where a variant has 2 seeds")


def test_each_environment_gets_its_own_figures(tmp_path) -> None:  # noqa: ANN001
    def fake(cell: dict, plugins: tuple = ()) -> dict:
        out = _fake(cell)
        out["environment"] = {"host": "a" if cell["variant"] == "static" else "b"}
        return out

    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"params": {}, "accuracy": {"seeds": [0, 1]}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(fn=fake), progress=False)
    df = load_results(tmp_path / "p.sqlite", "p")
    other = environment_sections(df)[1].environment_id
    names = sorted(p.name for p in make_plots(df, tmp_path / "plots", "p") if p.suffix == ".svg")
    stem = f"acc-vs-params_{slug('cifar_resnet8')}_{slug('digits')}.svg"
    assert names == sorted([f"{slug('p')}_{stem}", f"{slug('p')}_env-{other}_{stem}"])


def test_no_plottable_rows_gives_no_files(tmp_path) -> None:  # noqa: ANN001
    empty = pd.DataFrame(columns=["id", "suite", "backbone", "variant", "kind", "options", "values", "status",
                                  "environment", "finished"])
    assert make_plots(empty, tmp_path / "x") == []
    assert plot_layer_breakdown([], "t", tmp_path, "t", "env") == []


def test_layer_latency_covers_every_leaf_once() -> None:
    import dynconv_bench

    model = dynconv_bench.create_model("cifar_resnet8", "static-se", num_classes=10)
    rows = layer_latency(model, (3, 32, 32), batch_size=2, repeats=2, warmup=1)
    names = [r["layer"] for r in rows]
    converted = set(model.dynconv_report.converted)
    assert converted <= set(names)  # converted layers timed as one unit...
    assert not any(n.startswith(tuple(c + "." for c in converted)) for n in names)  # ...not their insides
    assert "fc" in names and all(r["time_ms"] > 0 and r["calls"] == 1 for r in rows)
    with pytest.raises(RuntimeError):  # hooks are removed afterwards: a failing forward leaves none behind
        layer_latency(model, (5, 32, 32))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_file_names_keep_labels_apart() -> None:
    # labels that slug alike still get different names (issue 29.9), and every name stays short
    for a, b in (("k!", "k?"), ("变体", "вариант"), ("a_b", "a-b"), ("K", "k")):
        assert slug(a) != slug(b)
    assert slug("static") .startswith("static-") and len(slug("x" * 5000)) <= 47


def test_figures_with_colliding_labels_are_all_written(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"layers": {}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(fn=_fake), progress=False)
    df = load_results(tmp_path / "p.sqlite", "p")
    df["variant"] = df["variant"].map({"static": "变体", "static-se": "вариант"})
    pngs = [p for p in make_plots(df, tmp_path / "plots", "p") if p.suffix == ".png"]
    assert len(pngs) == len(set(pngs)) == 2 and len(list((tmp_path / "plots").glob("*.png"))) == 2
    assert {Image.open(p).text["Title"].split(" / ")[1].split(":")[0] for p in pngs} == {"变体", "вариант"}


def test_throughput_has_a_marker_of_its_own_shape_at_every_measured_batch(tmp_path) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt

    from dynconv_bench.reporting import speed_figure

    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"speed": {"batch_sizes": [1, 4, 16]}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(fn=_fake), progress=False)
    long = metric_rows(load_results(tmp_path / "p.sqlite", "p"))
    saved = []
    real = speed_figure.save_figure
    speed_figure.save_figure = lambda fig, *a, **k: saved.append(fig) or []
    try:
        speed_figure.plot_throughput_vs_batch(long, "cifar_resnet8", tmp_path, "env")
    finally:
        speed_figure.save_figure = real
    lines = [ln for ln in saved[0].axes[0].get_lines() if ln.get_label() in ("static", "static-se")]
    assert [list(ln.get_xdata()) for ln in lines] == [[1, 4, 16], [1, 4, 16]]
    assert len({ln.get_marker() for ln in lines}) == 2 and all(ln.get_marker() not in ("", "None") for ln in lines)
    plt.close(saved[0])
