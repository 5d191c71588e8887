"""Plots: the Pareto front is exact; every figure is written as PNG, SVG (real text) and PDF, with no caption drawn."""

from __future__ import annotations

import math
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
from dynconv_bench.reporting.tradeoff_figure import (
    interval_halfwidths,
    keep_labels_inside,
    label_collisions,
    pareto_front,
    tradeoff_caption,
    tradeoff_figure,
)


def test_pareto_front_lower_cost_higher_accuracy() -> None:
    xs = [1.0, 2.0, 3.0, 1.5, 4.0]
    ys = [70.0, 75.0, 74.0, 69.0, 80.0]
    # 3.0/74 is beaten by 2.0/75; 1.5/69 by 1.0/70
    assert pareto_front(xs, ys) == [0, 1, 4]
    assert pareto_front(xs, ys, higher_x_better=True) == [4]
    assert pareto_front([1.0, 1.0], [5.0, 5.0]) == [0, 1]  # ties dominate neither


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


def _points(ys: list[float], xs: list[float], std: float = 1.0, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"x": xs, "y": ys, "std": std, "n": n}, index=[f"v{i}" for i in range(len(xs))])


def _words(text) -> str:  # noqa: ANN001
    return " ".join(text.get_text().split())


def _legend(fig) -> list[str]:  # noqa: ANN001
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_front_line_only_when_the_front_has_two_points() -> None:
    fig = tradeoff_figure(_points([95.0, 94.0, 93.0], [1.0, 2.0, 3.0]), "params (M)", "top-1 (%)", "t")
    assert "Pareto front" not in _legend(fig)  # v0 is cheaper and better than both others: a front of one point
    assert sorted(_legend(fig)) == ["95% t interval over seeds", "dominated", "on the Pareto front"]
    fig = tradeoff_figure(_points([93.0, 95.0], [1.0, 2.0]), "params (M)", "top-1 (%)", "t")
    assert "Pareto front" in _legend(fig) and "dominated" not in _legend(fig)


def test_accuracy_axis_is_zoomed_to_the_data_and_the_caption_names_chance() -> None:
    points = _points([95.0, 97.0], [1.0, 2.0], std=1.0, n=3)
    fig = tradeoff_figure(points, "params (M)", "top-1 on digits (%)", "t", chance=10.0)
    low, high = fig.axes[0].get_ylim()
    half = 4.302653 * 1.0 / 3 ** 0.5  # t(0.975, df 2) from the table: the 95% interval of a mean of 3
    assert 95.0 - half - 1.5 < low < 95.0 - half and 97.0 + half < high < 97.0 + half + 1.5  # not chance..100
    assert "chance (10.0%)" not in _legend(fig)  # far below the zoomed axis: named in the caption instead
    caption = tradeoff_caption(points, "top-1 on digits (%)", 10.0, (low, high))
    assert caption.endswith("Chance (100 / classes): 10.0% top-1 on digits (below the axis, which is zoomed to the "
                            "data).")
    assert caption.startswith("Error bars: 95% Student t interval of the mean over 3 seeds.")
    assert fig.texts == []  # the caption is the reports' (figure metadata), never drawn into the image
    bars = fig.axes[0].containers[0].lines[2][0].get_segments()  # the error bar segments, bottom to top
    assert [y for s in bars for y in s[:, 1]] == pytest.approx([95.0 - half, 95.0 + half, 97.0 - half, 97.0 + half])
    fig = tradeoff_figure(_points([95.0, 97.0], [1.0, 2.0], std=float("nan"), n=1), "p", "top-1 (%)", "t")
    assert not any("interval" in t for t in _legend(fig))  # one seed: no bars
    assert fig.axes[0].get_ylabel() == "top-1 (%), mean over 1 seed"
    one = _points([95.0, 97.0], [1.0, 2.0], std=float("nan"), n=1)
    assert tradeoff_caption(one, "top-1 (%)") == "No error bars: one seed per variant. Chance level not recorded."
    near = tradeoff_figure(_points([12.0, 15.0], [1.0, 2.0], std=0.5), "p", "top-1 (%)", "t", chance=10.0)
    assert "chance (10.0%)" in _legend(near)  # within the data's range: drawn


def test_interval_halfwidths_use_student_t() -> None:
    # t(0.975, 1) = 12.7062, t(0.975, 4) = 2.7764 (table); n = 1 or a missing std: no interval
    got = interval_halfwidths([2.0, 1.0, 1.0, float("nan")], [2, 5, 1, 3])
    assert got[:2] == pytest.approx([12.7062 * 2.0 / 2 ** 0.5, 2.7764 / 5 ** 0.5], rel=1e-4)
    assert all(math.isnan(x) for x in got[2:])


NAMES = ["static", "static-se", "kerneldna", "condconv", "dyconv", "odconv", "kernelwarehouse", "dcd"]


@pytest.mark.parametrize("xs, ys", [
    ([0.078, 0.078, 0.0781, 0.0785, 0.30, 0.12, 0.085, 0.35], [95.2, 95.3, 95.25, 95.4, 96.9, 95.6, 94.1, 96.5]),
    ([1.0, 1.002, 1.004, 1.006, 1.008, 1.01, 1.012, 1.05], [95.0, 95.1, 95.0, 95.1, 95.0, 95.1, 95.0, 95.1]),
])
def test_labels_touch_neither_each_other_nor_a_foreign_point(xs: list, ys: list) -> None:
    fig = tradeoff_figure(pd.DataFrame({"x": xs, "y": ys, "std": 0.3, "n": 3}, index=NAMES), "p", "top-1 (%)", "t")
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_text() in NAMES]
    assert sorted(t.get_text() for t in texts) == sorted(NAMES)
    assert label_collisions(ax, texts, xs, ys) == []
    # the check itself: labels left on their points collide
    for t, x, y in zip(texts, xs, ys):
        t.set_position((x, y))
    assert label_collisions(ax, texts, xs, ys)


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


def test_a_label_pushed_past_the_frame_is_brought_back_inside() -> None:
    fig = tradeoff_figure(_points([95.0, 96.0], [1.0, 2.0]), "p", "top-1 (%)", "t")
    ax = fig.axes[0]
    far = ax.text(2.0, 96.0, "a very long label that runs past the right edge of the axes", fontsize=8)
    texts = [t for t in ax.texts if t.get_text() in ("v0", "v1")] + [far]
    assert ("a very long label that runs past the right edge of the axes", "axes edge") in label_collisions(
        ax, texts, [1.0, 2.0, 2.0], [95.0, 96.0, 96.0])
    keep_labels_inside(ax)
    assert not [c for c in label_collisions(ax, texts, [1.0, 2.0, 2.0], [95.0, 96.0, 96.0]) if c[1] == "axes edge"]


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


def test_accuracy_bars_show_two_seeds_by_their_range_and_never_run_past_100() -> None:
    from dynconv_bench.reporting.tradeoff_figure import accuracy_bars

    points = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [96.0, 99.0, 50.0], "std": [2.0, 1.5, float("nan")],
                           "n": [2, 3, 1], "min": [94.0, 97.5, 50.0], "max": [98.0, 100.0, 50.0]},
                          index=["two", "three", "one"])
    below, above, cut = accuracy_bars(points)
    half = 4.302653 * 1.5 / 3 ** 0.5  # t(0.975, df 2): 3.73 points, past 100 from 99
    assert below[:2] == pytest.approx([2.0, half]) and above[:2] == pytest.approx([2.0, 1.0])
    assert math.isnan(below[2]) and math.isnan(above[2]) and cut == 1
    fig = tradeoff_figure(points, "params (M)", "top-1 (%)", "t")
    segments = fig.axes[0].containers[0].lines[2][0].get_segments()
    assert max(y for s in segments for y in s[:, 1]) == pytest.approx(100.0)
    caption = tradeoff_caption(points, "top-1 (%)")
    assert "min-max where a variant has 2 seeds" in caption and "1 t interval reached past 0 or 100% and is cut" in caption
