"""Figures (PNG, SVG with real text, PDF): accuracy trade-offs with the Pareto front, throughput vs batch, per-layer
latency. No caption is drawn into a figure: it travels in the files' metadata, and the HTML and LaTeX reports print
it under the figure.

Every text a user chose (variant, backbone, dataset, layer names) is drawn as plain text: `plain` shows control and
format characters as escapes and escapes `$`, so matplotlib never parses it as mathtext, and figures are drawn with
`text.usetex` off. Figures are written through `files.replacing` (a figure name that is a symbolic link is refused,
never followed) into a folder that is not itself a link (`make_folder(..., no_link=True)`)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..files import make_folder, replacing  # noqa: E402
from ..measures.speed import speed_setting  # noqa: E402
from .escape import visible  # noqa: E402
from .marks import flag_marks  # noqa: E402
from .report import (  # noqa: E402
    BASELINE,
    chance_levels,
    environment_sections,
    environment_summary,
    metric_rows,
)
from .stats import t_quantile  # noqa: E402

FORMATS = ("png", "svg", "pdf")
# text stays text: editable in Inkscape/Illustrator (SVG) and embedded as TrueType, not Type 3 outlines (PDF)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")  # one shape per variant: readable in grey print
EDITABLE_TEXT = {"svg.fonttype": "none", "pdf.fonttype": 42}
PLAIN_TEXT = {"text.usetex": False}  # a user's matplotlibrc with usetex on would send labels to LaTeX


def plain(text: Any) -> str:
    """A label as matplotlib draws it literally: control and format characters (bidi overrides) shown as escapes,
    every `$` escaped (`\\$`), so no pair of them starts mathtext (`$\\undefinedmacro$` would raise at draw)."""
    return visible(str(text)).replace("$", r"\$")


def unplain(text: str) -> str:
    """The inverse of `plain`'s `$` escape (for the title stored in a figure's metadata)."""
    return text.replace(r"\$", "$")


def pareto_front(xs: Sequence[float], ys: Sequence[float], higher_x_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both axes (y higher is better), sorted by x."""
    pts = [(x if higher_x_better else -x, y, i) for i, (x, y) in enumerate(zip(xs, ys))]
    front = []
    for gx, gy, i in pts:
        dominated = any((ox >= gx and oy >= gy) and (ox > gx or oy > gy) for ox, oy, _ in pts)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


def _slug(text: str) -> str:
    """A file-name part for a label: its letters and digits (at most 40) and a short hash of the whole label, so
    that labels differing only in punctuation or script (`k!`, `k?`; `变体`, `вариант`) never share a file."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40].strip("-")
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else digest


def _save(fig: Any, out_dir: Path, stem: str, env: str, caption: str = "", tags: Mapping[str, str] | None = None,
          finished: bool = False) -> list[Path]:
    """Write PNG, SVG and PDF; the PNG carries title, caption, environment line and `tags` (Suite, Environment,
    Backbone) as text chunks (the HTML report places each figure by them), the SVG and PDF title and caption."""
    if not finished:
        _finish(fig, env, caption)
    title = unplain(fig.axes[0].get_title()) if fig.axes else stem
    if fig.axes:  # the title leads the caption the reports print: not drawn twice
        fig.axes[0].set_title("")
    metadata = {"png": {**(tags or {}), "Title": title, "Description": caption, "Comment": env},
                "svg": {"Title": title, "Description": caption, "Source": env},
                "pdf": {"Title": title, "Subject": caption, "Keywords": env}}
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with replacing(path, "figure") as tmp, plt.rc_context(EDITABLE_TEXT):  # a full disk keeps the old figure
            # bbox "tight": the saved area grows to every artist, so no label or legend is cut at the frame
            fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata[fmt], bbox_inches="tight", pad_inches=0.05)
        paths.append(path)
    plt.close(fig)
    return paths


def _finish(fig: Any, env: str = "", caption: str = "") -> None:
    """The final layout. The caption and environment line are not drawn: the reports print them (metadata)."""
    fig.tight_layout()


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
    _finish(fig, env, tradeoff_caption(points, y_label, chance, shown))
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
    return _save(fig, out_dir, stem, env, caption, tags, finished=True)


def _speed_axis(rec: pd.Series, relative: bool = True) -> str:
    mode = "training" if rec["mode"] == "train" else "inference"
    if relative:
        return (f"{mode} speed vs {BASELINE}, {speed_setting(rec)}, batch {int(rec['batch_size'])} "
                f"(x {BASELINE}'s throughput, measured in the same cell)")
    return f"{mode} throughput, {speed_setting(rec)}, batch {int(rec['batch_size'])} (images/s, absolute: one run)"


def speed_points(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, bool] | None:
    """Per variant (and batch, when several): the speed a plot may show, its marks, and whether it is a ratio.

    The in-cell ratio to the baseline when every row was interleaved (the baseline's is 1 by construction);
    else absolute throughput when the rows come from one run; else None (absolute values of different runs
    would compare the machine's state, not the variants). Marks: `!` under load, `‡` the run waited, `§` its
    ratio's interval is too wide (see reporting/marks.MARKS). `speed_intervals` gives the intervals."""
    keys = ["variant", "batch_size"] if rows["batch_size"].nunique() > 1 else ["variant"]
    flags = rows.groupby(keys)["flags"].agg(flag_marks)
    if rows["ratio"].notna().all():
        ratio = rows.groupby(keys)["ratio"].mean()
        base = ratio.index.get_level_values(0) == BASELINE if len(keys) > 1 else ratio.index == BASELINE
        ratio[base] = 1.0
        return ratio, flags, True
    if rows["run_id"].nunique() <= 1:
        return rows.groupby(keys)["value"].median(), flags, False
    return None


def speed_intervals(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """Per variant (and batch, as `speed_points`): the low and high ends of the interval the leaderboard prints
    beside each ratio (95% bootstrap; older rows: the per-process range); None unless every row has a ratio. The
    baseline's are NaN: it is the reference at 1, and its A/A interval belongs to its A/A point, not to 1."""
    if not rows["ratio"].notna().all():
        return None
    keys = ["variant", "batch_size"] if rows["batch_size"].nunique() > 1 else ["variant"]
    ends = []
    for end in ("ratio_low", "ratio_high"):
        values = rows.groupby(keys)[end].mean()
        values[(values.index.get_level_values(0) if len(keys) > 1 else values.index) == BASELINE] = float("nan")
        ends.append(values)
    return ends[0], ends[1]


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


def plot_throughput_vs_batch(long: pd.DataFrame, backbone: str, out_dir: Path, env: str,
                             mode: str = "inference", prefix: str = "", tags: Mapping[str, str] | None = None
                             ) -> list[Path]:
    """Speed against batch size, one line per variant, one figure per device setting: the in-cell ratio to the
    baseline where the cells were interleaved, else absolute images/s of one run (see `speed_points`)."""
    part = long[(long["backbone"] == backbone) & (long["metric"] == "throughput") & (long["mode"] == mode)]
    part = part.assign(setting=[speed_setting(r) for _, r in part.iterrows()])
    paths: list[Path] = []
    for setting in dict.fromkeys(part["setting"]):
        sub = part[part["setting"] == setting]
        shown = speed_points(sub) if sub["batch_size"].nunique() >= 2 else None
        if shown is None:
            continue
        values, marks, relative = shown
        bars = speed_intervals(sub) if relative else None
        fig, ax = plt.subplots(figsize=(7, 4.8))
        for k, variant in enumerate(dict.fromkeys(sub["variant"])):  # a marker at each measured batch
            line = values[variant].sort_index()
            drawn = ax.plot(line.index, line.values, marker=MARKERS[k % len(MARKERS)], ms=6, label=plain(variant),
                            lw=2.2 if variant == BASELINE else 1.4, color="black" if variant == BASELINE else None)
            if bars is not None and bars[0][variant].notna().any():  # the interval the table prints, as error bars
                low, high = bars[0][variant].reindex(line.index), bars[1][variant].reindex(line.index)
                ax.errorbar(line.index, line.values, yerr=[(line - low).clip(lower=0).fillna(0).values,
                                                           (high - line).clip(lower=0).fillna(0).values],
                            fmt="none", ecolor=drawn[0].get_color(), elinewidth=1.0, capsize=3, alpha=0.8)
            for batch, y in line.items():
                if marks.get((variant, batch)):
                    ax.annotate(plain(marks[(variant, batch)]), (batch, y), xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sub["batch_size"].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"throughput vs {BASELINE} (x, ratio measured in the same cell)" if relative
                      else "throughput (images/s, median of timed runs; absolute: one run)")
        ax.set_title(plain(f"{backbone}: {mode} throughput, {setting}"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        caption = ((f"{mode.capitalize()} throughput of each variant at each batch size as a ratio to {BASELINE}'s, "
                    f"timed round-robin with it in the same cell ({BASELINE} is the reference, 1 by definition); "
                    f"error bars: the interval the leaderboard prints beside each ratio (95% hierarchical bootstrap "
                    f"over the cell's processes and rounds; rows of older versions: the range of the per-process "
                    f"ratios)" if relative else
                    f"{mode.capitalize()} throughput of each variant at each batch size: the median of the timed runs "
                    f"of one cell, all from one run") + f"; {BASELINE} in black; ! marks a point measured under load, "
                                                        f"‡ one whose runs waited rather than worked, "
                                                        f"§ one whose ratio's interval is wide (see the "
                                                        f"leaderboard's note).")
        paths += _save(fig, out_dir, f"{prefix}throughput-vs-batch_{_slug(backbone)}_{_slug(setting)}_{mode}", env,
                       caption, {**(tags or {}), "Backbone": backbone})
    return paths


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def plot_layer_breakdown(layers: list[dict[str, Any]], title: str, out_dir: Path, stem: str, env: str,
                         top: int = 20, tags: Mapping[str, str] | None = None, batch_size: int | None = None,
                         threads: int | None = None, forward_ms: float | None = None,
                         hooked_forward_ms: float | None = None) -> list[Path]:
    """Horizontal bars of the slowest layers (median time per forward: per call x calls), the rest summed as one
    bar; the axis label states the batch size, the threads, the sum and the whole forward of the same run."""
    df = pd.DataFrame(layers)
    if df.empty:
        return []
    calls = df["calls"] if "calls" in df else pd.Series(1, index=df.index)
    df = df.assign(per_forward=df["time_ms"] * pd.to_numeric(calls, errors="coerce").fillna(1).clip(lower=1))
    df = df.sort_values("per_forward", ascending=False)
    head, rest = df.head(top), df.iloc[top:]
    labels = [plain(f"{r.layer} ({r.type})") for r in head.itertuples()]
    values = head["per_forward"].tolist()
    if not rest.empty:
        labels.append(f"other {len(rest)} layers")
        values.append(float(rest["per_forward"].sum()))
    types = list(dict.fromkeys(head["type"]))
    cmap = plt.get_cmap("tab10")
    colors = [cmap(types.index(t) % 10) for t in head["type"]] + (["#bbbbbb"] if not rest.empty else [])
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) + 1.9))
    ax.barh(range(len(labels)), values, color=colors)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    from matplotlib.patches import Patch

    handles = [Patch(color=cmap(i % 10), label=plain(t)) for i, t in enumerate(types)]
    ax.legend(handles=handles, title="layer type", fontsize=7, title_fontsize=7, loc="center right")
    batch = f"batch {int(batch_size)}" if _known(batch_size) else "batch not recorded"
    thr = (f"{int(threads)} torch thread{'s' if int(threads) != 1 else ''}" if _known(threads)
           else "threads not recorded")
    total = float(df["per_forward"].sum())
    whole = (f"whole forward {float(forward_ms):.2f} ms" if _known(forward_ms)
             else "whole forward not recorded by this row")
    if _known(hooked_forward_ms):
        whole += f" ({float(hooked_forward_ms):.2f} ms with the hooks)"
    summary = f"sum of the {len(df)} layers {total:.2f} ms per forward; {whole}"
    ax.set_xlabel(f"time per forward (ms; median per call x calls), {batch}, {thr}, CPU\n{summary}")
    ax.set_title(plain(f"{title}\n{summary}"))
    ax.grid(axis="x", alpha=0.3)
    caption = (f"Median time per forward ({batch}, {thr}, CPU) of the {len(head)} slowest layers"
               + (f"; the other {len(rest)} summed in grey" if not rest.empty else "")
               + f". Summed: every layer's median time per call times its calls per forward, {total:.2f} ms; "
               + (f"the whole forward, timed in the same run without hooks, {float(forward_ms):.2f} ms"
                  if _known(forward_ms) else "the whole forward was not timed by this row (an older version)")
               + (f", with them {float(hooked_forward_ms):.2f} ms" if _known(hooked_forward_ms) else "")
               + ". How: ordinary eval forwards of the deployed model in the cell's own process, a perf_counter "
                 "hook before and after each leaf module and converted layer (no device sync: CPU). Why the sum is "
                 "not the forward: each layer's median is taken on its own, ops outside any module (residual adds, "
                 "functional calls) are in no layer, and the hooks' Python calls sit between the layers. Neither is a "
                 "speed cell's figure: speed cells time fresh worker processes (fixed malloc tunables, interleaved "
                 "with static) at their own batch size and thread count.")
    return _save(fig, out_dir, stem, env, caption, tags)


def make_plots(df: pd.DataFrame, out_dir: str | Path, suite: str | None = None) -> list[Path]:
    """Every figure the rows of one suite support, per environment; returns the written paths.

    The environment of the latest row keeps the plain file names; another one's files start with
    `env-<id>_`, so that no figure mixes rows of two environments.
    """
    out = make_folder(out_dir, "figures", no_link=True)
    paths: list[Path] = []
    with plt.rc_context(PLAIN_TEXT):
        for i, section in enumerate(environment_sections(df)):
            prefix = (f"{_slug(suite)}_" if suite else "") + (f"env-{section.environment_id}_" if i else "")
            paths += _section_plots(section.rows, out, prefix,
                                    {"Suite": suite or "", "Environment": section.environment_id})
    return [p for p in paths if p.suffix.lstrip(".") in FORMATS]


def _section_plots(df: pd.DataFrame, out: Path, prefix: str, tags: Mapping[str, str]) -> list[Path]:
    env = environment_summary(df)
    long = metric_rows(df)
    chance = chance_levels(df)
    paths: list[Path] = []
    for backbone in dict.fromkeys(long["backbone"]):
        part = long[long["backbone"] == backbone]
        xs: list[tuple] = [(part[part["metric"] == "params"], "params (M)", "params", False),
              (part[part["metric"] == "macs"], "MACs (M per image, trained form)", "macs", False)]
        speed = _largest_batch(part[(part["metric"] == "throughput") & (part["mode"] == "inference")])
        shown = speed_points(speed) if not speed.empty else None
        if shown is not None:
            value, marks, relative = shown
            xs.append((speed.assign(value=speed["variant"].map(value)), _speed_axis(speed.iloc[0], relative),
                       "throughput", True, marks))
        acc = part[part["metric"] == "top1"]
        for dataset in dict.fromkeys(acc["dataset"]):
            y = acc[acc["dataset"] == dataset].groupby("variant", sort=False)["value"]
            for x_rows, x_label, tag, higher, *marks in xs:
                points = pd.DataFrame({"x": x_rows.groupby("variant")["value"].mean(), "y": y.mean(),
                                       "std": y.std(ddof=1), "n": y.count(), "min": y.min(), "max": y.max()}
                                      ).reindex(list(y.groups))
                if marks:  # a speed measured under load (or that waited) carries its mark into the figure
                    points.index = [f"{v} {marks[0].get(v, '')}".strip() for v in points.index]
                paths += plot_tradeoff(points, x_label, f"top-1 on {dataset} (%)",
                                       f"{backbone} on {dataset}: accuracy vs {tag}", out,
                                       f"{prefix}acc-vs-{tag}_{_slug(backbone)}_{_slug(dataset)}", env, higher,
                                       chance=chance.get(str(dataset)), tags={**tags, "Backbone": backbone})
        for mode in ("inference", "train"):
            paths += plot_throughput_vs_batch(long, backbone, out, env, mode, prefix, tags)
    layers = long[long["metric"] == "layer_time"]
    whole = long[long["metric"] == "layers_forward"]
    for (backbone, variant, row_id), rows in layers.groupby(["backbone", "variant", "id"], sort=False):
        first = rows.iloc[0]
        batch, threads = first.get("batch_size"), first.get("threads")
        forward = {bool(r.get("hooks")): r["value"] for _, r in whole[whole["id"] == row_id].iterrows()}
        setting = (f"batch {int(batch)}" if _known(batch) else "batch not recorded") + (
            f", {int(threads)} thread{'s' if int(threads) != 1 else ''}" if _known(threads) else "")
        title = f"{backbone} / {variant}: per-layer latency ({setting}, deployed)"
        table = [{"layer": r["layer"], "type": r["type"], "time_ms": r["value"], "calls": r.get("calls")}
                 for _, r in rows.iterrows()]
        paths += plot_layer_breakdown(table, title, out, f"{prefix}layers_{_slug(backbone)}_{_slug(variant)}", env,
                                      tags={**tags, "Backbone": backbone}, batch_size=batch, threads=threads,
                                      forward_ms=forward.get(False), hooked_forward_ms=forward.get(True))
    return paths


def _largest_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """The throughput records of the first speed setting (plain fp32 preferred) at its largest batch."""
    if rows.empty:
        return rows
    plain = rows[(rows["precision"] == "fp32") & ~rows["channels_last"].astype(bool) & ~rows["compile"].astype(bool)]
    rows = plain if not plain.empty else rows
    rows = rows[rows["device"] == rows["device"].iloc[0]]
    return rows[rows["batch_size"] == rows["batch_size"].max()]
