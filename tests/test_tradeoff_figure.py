"""The accuracy trade-off figure: the Pareto front is exact, the axis is zoomed to the data with chance named in the
caption, error bars are Student t intervals (two seeds: their range) cut at 100%, and labels touch neither each
other, a foreign point nor the frame."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dynconv_bench.reporting.tradeoff_figure import (
    accuracy_bars,
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


def _points(ys: list[float], xs: list[float], std: float = 1.0, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"x": xs, "y": ys, "std": std, "n": n}, index=[f"v{i}" for i in range(len(xs))])


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


def test_a_label_pushed_past_the_frame_is_brought_back_inside() -> None:
    fig = tradeoff_figure(_points([95.0, 96.0], [1.0, 2.0]), "p", "top-1 (%)", "t")
    ax = fig.axes[0]
    far = ax.text(2.0, 96.0, "a very long label that runs past the right edge of the axes", fontsize=8)
    texts = [t for t in ax.texts if t.get_text() in ("v0", "v1")] + [far]
    assert ("a very long label that runs past the right edge of the axes", "axes edge") in label_collisions(
        ax, texts, [1.0, 2.0, 2.0], [95.0, 96.0, 96.0])
    keep_labels_inside(ax)
    assert not [c for c in label_collisions(ax, texts, [1.0, 2.0, 2.0], [95.0, 96.0, 96.0]) if c[1] == "axes edge"]


def test_accuracy_bars_show_two_seeds_by_their_range_and_never_run_past_100() -> None:
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
