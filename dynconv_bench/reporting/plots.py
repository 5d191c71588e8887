"""Figures (PNG + SVG): accuracy trade-offs with the Pareto front, throughput vs batch, per-layer latency."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..measures.speed import speed_setting  # noqa: E402
from .report import (  # noqa: E402
    BASELINE,
    chance_levels,
    environment_sections,
    environment_summary,
    metric_rows,
)

FORMATS = ("png", "svg")


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
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _save(fig: Any, out_dir: Path, stem: str, env: str) -> list[Path]:
    fig.text(0.01, 0.005, env, fontsize=6.5, color="#555555", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150 if fmt == "png" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def tradeoff_figure(points: pd.DataFrame, x_label: str, y_label: str, title: str, higher_x_better: bool = False,
                    log_x: bool = False, chance: float | None = None) -> Any:
    """Accuracy against a cost or speed: columns x, y (mean over seeds), std and n; the Pareto front marked.

    The y axis runs from chance (or 0) to 100 so that a small spread looks small; error bars are
    +-1 sample std over seeds, and the legend says so.
    """
    fig, ax = plt.subplots(figsize=(7, 4.8))
    xs, ys = points["x"].tolist(), points["y"].tolist()
    front = pareto_front(xs, ys, higher_x_better)
    on = [i in front for i in range(len(xs))]
    ns = sorted({int(n) for n, s in zip(points["n"], points["std"]) if pd.notna(s)})
    if ns:
        ax.errorbar(xs, ys, yerr=points["std"].fillna(0.0).tolist(), fmt="none", ecolor="#999999", capsize=3,
                    zorder=1, label=f"error bars: ±1 std over {_count(ns)} seeds")
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="tab:red", lw=1.2, zorder=1,
                label="Pareto front")
    for flag, color, label in ((True, "tab:red", "on the Pareto front"), (False, "tab:blue", "dominated")):
        sel = [i for i in range(len(xs)) if on[i] == flag]
        if sel:
            ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], c=color, s=45, zorder=2, label=label)
    low = 0.0 if chance is None else chance
    if chance is not None:
        ax.axhline(chance, color="#777777", ls=":", lw=1.0, zorder=0, label=f"chance ({chance:.1f}%)")
    spread = (points["y"] - points["std"].fillna(0.0)).min()
    ax.set_ylim(min(low, spread) - 2.0, 101.0)
    if log_x:
        ax.set_xscale("log")
    _label_points(ax, list(points.index), xs, ys)
    ax.set_xlabel(f"{x_label} ({'higher' if higher_x_better else 'lower'} is better)")
    every = sorted({int(n) for n in points["n"]})
    ax.set_ylabel(f"{y_label}, mean over {_count(every)} seed{'s' if every[-1] > 1 else ''}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _count(ns: list[int]) -> str:
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def plot_tradeoff(points: pd.DataFrame, x_label: str, y_label: str, title: str, out_dir: Path, stem: str, env: str,
                  higher_x_better: bool = False, log_x: bool = False, chance: float | None = None) -> list[Path]:
    """Write `tradeoff_figure` as PNG and SVG."""
    points = points.dropna(subset=["x", "y"])
    if points.empty:
        return []
    fig = tradeoff_figure(points, x_label, y_label, title, higher_x_better, log_x, chance)
    return _save(fig, out_dir, stem, env)


def _speed_axis(rec: pd.Series) -> str:
    mode = "training" if rec["mode"] == "train" else "inference"
    return f"{mode} throughput, {speed_setting(rec)}, batch {int(rec['batch_size'])} (images/s)"


def _label_points(ax: Any, names: list[str], xs: list[float], ys: list[float]) -> None:
    """Label each point, trying a few offsets so that labels do not overlap each other."""
    fig = ax.figure
    fig.canvas.draw()
    placed: list[tuple[float, float, float, float]] = []
    offsets = [(6, 6), (6, -14), (-8, 6), (-8, -14), (6, 18), (6, -26), (-8, 18), (-8, -26)]
    for name, x, y in zip(names, xs, ys):
        px, py = ax.transData.transform((x, y)) * 72.0 / fig.dpi  # in points
        w, h = 5.2 * len(name), 9.0
        choice = offsets[0]
        for dx, dy in offsets:
            left = px + dx - (w if dx < 0 else 0)
            box = (left, py + dy, left + w, py + dy + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = (dx, dy)
                break
        dx, dy = choice
        left = px + dx - (w if dx < 0 else 0)
        placed.append((left, py + dy, left + w, py + dy + h))
        # a label pushed away from its point by others gets a thin line to it
        lead = None if (dx, dy) == offsets[0] else {"arrowstyle": "-", "color": "#aaaaaa", "lw": 0.6}
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                    ha="right" if dx < 0 else "left", fontweight="bold" if name == BASELINE else "normal",
                    arrowprops=lead)


def plot_throughput_vs_batch(long: pd.DataFrame, backbone: str, out_dir: Path, env: str,
                             mode: str = "inference", prefix: str = "") -> list[Path]:
    """Throughput (images/s) against batch size, one line per variant, one figure per device setting."""
    part = long[(long["backbone"] == backbone) & (long["metric"] == "throughput") & (long["mode"] == mode)]
    part = part.assign(setting=[speed_setting(r) for _, r in part.iterrows()])
    paths: list[Path] = []
    for setting in dict.fromkeys(part["setting"]):
        sub = part[part["setting"] == setting]
        if sub["batch_size"].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.8))
        for variant in dict.fromkeys(sub["variant"]):
            line = sub[sub["variant"] == variant].groupby("batch_size")["value"].median().sort_index()
            ax.plot(line.index, line.values, marker="o", label=variant,
                    lw=2.2 if variant == BASELINE else 1.4, color="black" if variant == BASELINE else None)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sub["batch_size"].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel("throughput (images/s, median of timed runs)")
        ax.set_title(f"{backbone}: {mode} throughput, {setting}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        paths += _save(fig, out_dir, f"{prefix}throughput-vs-batch_{_slug(backbone)}_{_slug(setting)}_{mode}", env)
    return paths


def plot_layer_breakdown(layers: list[dict[str, Any]], title: str, out_dir: Path, stem: str, env: str,
                         top: int = 20) -> list[Path]:
    """Horizontal bars of the slowest layers (median forward time), the rest summed as one bar."""
    df = pd.DataFrame(layers)
    if df.empty:
        return []
    df = df.sort_values("time_ms", ascending=False)
    head, rest = df.head(top), df.iloc[top:]
    labels = [f"{r.layer} ({r.type})" for r in head.itertuples()]
    values = head["time_ms"].tolist()
    if not rest.empty:
        labels.append(f"other {len(rest)} layers")
        values.append(float(rest["time_ms"].sum()))
    types = list(dict.fromkeys(head["type"]))
    cmap = plt.get_cmap("tab10")
    colors = [cmap(types.index(t) % 10) for t in head["type"]] + (["#bbbbbb"] if not rest.empty else [])
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) + 1.6))
    ax.barh(range(len(labels)), values, color=colors)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    from matplotlib.patches import Patch

    handles = [Patch(color=cmap(i % 10), label=t) for i, t in enumerate(types)]
    ax.legend(handles=handles, title="layer type", fontsize=7, title_fontsize=7, loc="center right")
    ax.set_xlabel("forward time per call (ms, median)")
    total = float(df["time_ms"].sum())
    ax.set_title(f"{title}\nsum of layer times {total:.2f} ms")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out_dir, stem, env)


def make_plots(df: pd.DataFrame, out_dir: str | Path, suite: str | None = None) -> list[Path]:
    """Every figure the rows of one suite support, per environment; returns the written paths.

    The environment of the latest row keeps the plain file names; another one's files start with
    `env-<id>_`, so that no figure mixes rows of two environments.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i, section in enumerate(environment_sections(df)):
        prefix = (f"{_slug(suite)}_" if suite else "") + (f"env-{section.environment_id}_" if i else "")
        paths += _section_plots(section.rows, out, prefix)
    return [p for p in paths if p.suffix in (".png", ".svg")]


def _section_plots(df: pd.DataFrame, out: Path, prefix: str) -> list[Path]:
    env = environment_summary(df)
    long = metric_rows(df)
    chance = chance_levels(df)
    paths: list[Path] = []
    for backbone in dict.fromkeys(long["backbone"]):
        part = long[long["backbone"] == backbone]
        xs = [(part[part["metric"] == "params"], "params (M)", "params", False),
              (part[part["metric"] == "macs"], "MACs (M, per image)", "macs", False)]
        speed = _largest_batch(part[(part["metric"] == "throughput") & (part["mode"] == "inference")])
        if not speed.empty:
            xs.append((speed, _speed_axis(speed.iloc[0]), "throughput", True))
        acc = part[part["metric"] == "top1"]
        for dataset in dict.fromkeys(acc["dataset"]):
            y = acc[acc["dataset"] == dataset].groupby("variant", sort=False)["value"]
            for x_rows, x_label, tag, higher in xs:
                points = pd.DataFrame({"x": x_rows.groupby("variant")["value"].mean(), "y": y.mean(),
                                       "std": y.std(ddof=1), "n": y.count()}).reindex(list(y.groups))
                paths += plot_tradeoff(points, x_label, f"top-1 on {dataset} (%)",
                                       f"{backbone} on {dataset}: accuracy vs {tag}", out,
                                       f"{prefix}acc-vs-{tag}_{_slug(backbone)}_{_slug(dataset)}", env, higher,
                                       chance=chance.get(str(dataset)))
        for mode in ("inference", "train"):
            paths += plot_throughput_vs_batch(long, backbone, out, env, mode, prefix)
    layers = long[long["metric"] == "layer_time"]
    for (backbone, variant, _), rows in layers.groupby(["backbone", "variant", "id"], sort=False):
        title = f"{backbone} / {variant}: per-layer latency (batch {int(rows['batch_size'].iloc[0])}, deployed)"
        table = [{"layer": r.layer, "type": r.type, "time_ms": r.value} for r in rows.itertuples()]
        paths += plot_layer_breakdown(table, title, out, f"{prefix}layers_{_slug(backbone)}_{_slug(variant)}", env)
    return paths


def _largest_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """The throughput records of the first speed setting (plain fp32 preferred) at its largest batch."""
    if rows.empty:
        return rows
    plain = rows[(rows["precision"] == "fp32") & ~rows["channels_last"].astype(bool) & ~rows["compile"].astype(bool)]
    rows = plain if not plain.empty else rows
    rows = rows[rows["device"] == rows["device"].iloc[0]]
    return rows[rows["batch_size"] == rows["batch_size"].max()]
