"""The accuracy trade-off figure: top-1 against a cost or speed, with error bars over seeds, the Pareto front, the
chance level, and labels placed off each other and inside the frame."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .figure_files import finish, plain, save_figure
from .leaderboard import BASELINE
from .stats import t_quantile


def pareto_front(xs: Sequence[float], ys: Sequence[float], higher_x_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both axes (y higher is better), sorted by x."""
    pts = [(x if higher_x_better else -x, y, i) for i, (x, y) in enumerate(zip(xs, ys))]
    front = []
    for gx, gy, i in pts:
        dominated = any((ox >= gx and oy >= gy) and (ox > gx or oy > gy) for ox, oy, _ in pts)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


def interval_halfwidths(std: Sequence[float], n: Sequence[int], level: float = 0.95) -> list[float]:
    """Half-width of the Student t interval of each mean (std over n seeds); NaN where n < 2 or std is missing."""
    return [t_quantile(0.5 + level / 2.0, int(k) - 1) * float(s) / math.sqrt(int(k))
            if pd.notna(k) and int(k) >= 2 and pd.notna(s) else float("nan") for s, k in zip(std, n)]


def accuracy_bars(points: pd.DataFrame, level: float = 0.95) -> tuple[list[float], list[float], int]:
    """Per point, the error bar's extent below and above the mean, and how many t intervals were cut at 100%.

    Three or more seeds: the Student t interval of the mean; two: the seeds' own min-max (a t interval over two
    values spans about +-6 std: it says nothing); one: no bar. A bar never runs past 0 or 100%: the cut ones
    are counted, and the caption says so."""
    half = interval_halfwidths(points["std"].tolist(), points["n"].tolist(), level)
    lows = points["min"].tolist() if "min" in points else [float("nan")] * len(points)
    highs = points["max"].tolist() if "max" in points else [float("nan")] * len(points)
    below, above, cut = [], [], 0
    for y, h, k, lo, hi in zip(points["y"].tolist(), half, points["n"].tolist(), lows, highs):
        if pd.notna(k) and int(k) == 2 and pd.notna(lo) and pd.notna(hi):
            below.append(y - lo)
            above.append(hi - y)
        elif pd.notna(h) and pd.notna(k) and int(k) >= 3:
            cut += (y + h > 100.0) or (y - h < 0.0)
            below.append(min(h, y))
            above.append(min(h, 100.0 - y))
        else:
            below.append(float("nan"))
            above.append(float("nan"))
    return below, above, cut


def accuracy_limits(ys: Sequence[float], below: Sequence[float], above: Sequence[float] | None = None
                    ) -> tuple[float, float]:
    """The y range of an accuracy plot: the means and their error bars, padded for the labels."""
    above = below if above is None else above
    low = min(y - (0.0 if pd.isna(b) else b) for y, b in zip(ys, below))
    high = max(y + (0.0 if pd.isna(a) else a) for y, a in zip(ys, above))
    pad = max(0.15 * (high - low), 0.5)  # half a point at least when all means agree
    return max(low - pad, 0.0), min(high + pad, 100.0 + pad / 2)


def tradeoff_caption(points: pd.DataFrame, y_label: str, chance: float | None = None,
                     shown: tuple[float, float] | None = None) -> str:
    """What the error bars are and where chance lies (guessing: 100 / classes)."""
    with_std = [int(n) for n, s in zip(points["n"], points["std"]) if pd.notna(s) and pd.notna(n)]
    ns = sorted({n for n in with_std if n >= 3})
    parts = [f"95% Student t interval of the mean over {_count(ns)} seeds"] if ns else []
    if 2 in with_std and "min" in points:
        parts.append("the two seeds' min-max where a variant has 2 seeds (no t interval over 2)")
    cut = accuracy_bars(points)[2]
    bars = (f"Error bars: {'; '.join(parts)}." if parts else "No error bars: one seed per variant.")
    if cut:
        bars += f" {cut} t interval{'s' if cut > 1 else ''} reached past 0 or 100% and {'are' if cut > 1 else 'is'} cut there."
    if chance is None:
        return f"{bars} Chance level not recorded."
    where = "dotted line" if shown is not None and shown[0] <= chance <= shown[1] else "below the axis, which is zoomed to the data"
    return f"{bars} Chance (100 / classes): {chance:.1f}% {y_label.split(' (')[0]} ({where})."


def tradeoff_figure(points: pd.DataFrame, x_label: str, y_label: str, title: str, higher_x_better: bool = False,
                    log_x: bool = False, chance: float | None = None, env: str = "") -> Any:
    """Accuracy against a cost or speed: columns x, y (mean over seeds), std and n; the Pareto front marked.

    The y axis is zoomed to the means and their 95% t intervals; the caption names the chance level.
    """
    fig, ax = plt.subplots(figsize=(8, 5))
    xs, ys = points["x"].tolist(), points["y"].tolist()
    below, above, _ = accuracy_bars(points)
    front = pareto_front(xs, ys, higher_x_better)
    on = [i in front for i in range(len(xs))]
    if any(pd.notna(b) for b in below):
        ax.errorbar(xs, ys, yerr=[[0.0 if pd.isna(b) else b for b in below], [0.0 if pd.isna(a) else a for a in above]],
                    fmt="none", ecolor="#999999", capsize=3, zorder=1,
                    label="95% t interval over seeds" if all(int(k) != 2 for k in points["n"]) else
                    "95% t interval (min-max for 2 seeds)")
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="tab:red", lw=1.2, zorder=1,
                label="Pareto front")
    for flag, color, label in ((True, "tab:red", "on the Pareto front"), (False, "tab:blue", "dominated")):
        sel = [i for i in range(len(xs)) if on[i] == flag]
        if sel:
            ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], c=color, s=45, zorder=2, label=label)
    shown = accuracy_limits(ys, below, above)
    ax.set_ylim(*shown)
    if chance is not None and shown[0] <= chance <= shown[1]:
        ax.axhline(chance, color="#777777", ls=":", lw=1.0, zorder=0, label=f"chance ({chance:.1f}%)")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(plain(f"{x_label} ({'higher' if higher_x_better else 'lower'} is better)"))
    every = sorted({int(n) for n in points["n"]})
    ax.set_ylabel(plain(f"{y_label}, mean over {_count(every)} seed{'s' if every[-1] > 1 else ''}"))
    ax.set_title(plain(title))
    ax.margins(x=0.1)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)  # beside: no label under it
    finish(fig, env, tradeoff_caption(points, y_label, chance, shown))
    _label_points(ax, list(points.index), xs, ys)
    keep_labels_inside(ax)
    return fig


def _count(ns: list[int]) -> str:
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def plot_tradeoff(points: pd.DataFrame, x_label: str, y_label: str, title: str, out_dir: Path, stem: str, env: str,
                  higher_x_better: bool = False, log_x: bool = False, chance: float | None = None,
                  tags: Mapping[str, str] | None = None) -> list[Path]:
    """Write `tradeoff_figure` as PNG and SVG."""
    points = points.dropna(subset=["x", "y"])
    if points.empty:
        return []
    fig = tradeoff_figure(points, x_label, y_label, title, higher_x_better, log_x, chance, env)
    below, above, _ = accuracy_bars(points)
    caption = tradeoff_caption(points, y_label, chance, accuracy_limits(points["y"].tolist(), below, above))
    return save_figure(fig, out_dir, stem, env, caption, tags, finished=True)


def _label_points(ax: Any, names: list[str], xs: list[float], ys: list[float]) -> None:
    """Label each point; adjustText moves the labels off each other and off every point (a line leads back).

    adjustText is iterative and gives no guarantee: where labels still touch, it runs again with more room.
    """
    from adjustText import adjust_text

    texts = [ax.text(x, y, plain(name), fontsize=8, fontweight="bold" if name == BASELINE else "normal")
             for name, x, y in zip(names, xs, ys)]
    tries = ((1.3, 1.8), (1.6, 2.2), (2.0, 2.8))
    for k, expand in enumerate(tries):
        for text, x, y in zip(texts, xs, ys):  # every try starts from the points
            text.set_position((x, y))
        _, leads = adjust_text(texts, x=xs, y=ys, ax=ax, expand=expand, force_static=(0.4, 0.8),
                               force_text=(0.4, 0.8), min_arrow_len=0,
                               arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6})
        if k == len(tries) - 1 or not label_collisions(ax, texts, xs, ys):
            return
        for lead in leads:
            lead.remove()


def keep_labels_inside(ax: Any, pad: float = 3.0, tries: int = 40) -> None:
    """Widen the axes' limits until every text drawn in the axes lies inside its frame (`pad` pixels in): a label
    adjustText pushed past the edge is neither clipped nor drawn over the frame."""
    renderer = ax.figure.canvas.get_renderer()
    for _ in range(tries):
        frame = ax.get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text()]
        if not boxes:
            return
        x0, y0 = min(b.x0 for b in boxes) - pad, min(b.y0 for b in boxes) - pad
        x1, y1 = max(b.x1 for b in boxes) + pad, max(b.y1 for b in boxes) + pad
        if x0 >= frame.x0 and y0 >= frame.y0 and x1 <= frame.x1 and y1 <= frame.y1:
            return
        inv = ax.transData.inverted()
        (dx0, dy0), (dx1, dy1) = inv.transform([(min(x0, frame.x0), min(y0, frame.y0)),
                                                (max(x1, frame.x1), max(y1, frame.y1))])
        ax.set_xlim(dx0, dx1)
        ax.set_ylim(dy0, dy1)


def label_collisions(ax: Any, texts: list[Any], xs: list[float], ys: list[float],
                     marker_size: float = 45.0) -> list[tuple[str, str]]:
    """Pairs (label, what it touches): another label, a point other than its own (marker radius included), or
    the axes' edge."""
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    radius = math.sqrt(marker_size) / 2 * ax.figure.dpi / 72.0
    points = ax.transData.transform(list(zip(xs, ys)))
    frame = ax.get_window_extent(renderer)
    out = []
    for i, box in enumerate(boxes):
        name = texts[i].get_text()
        out += [(name, texts[j].get_text()) for j in range(i + 1, len(boxes)) if box.overlaps(boxes[j])]
        out += [(name, f"point {texts[j].get_text()}") for j, (px, py) in enumerate(points)
                if j != i and box.x0 - radius < px < box.x1 + radius and box.y0 - radius < py < box.y1 + radius]
        if not frame.padded(2.0).contains(box.x0, box.y0) or not frame.padded(2.0).contains(box.x1, box.y1):
            out.append((name, "axes edge"))
    return out
