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

from .report import BASELINE, environment_summary, leaderboards, metric_rows  # noqa: E402

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


def plot_tradeoff(board: pd.DataFrame, x_col: str, y_col: str, title: str, out_dir: Path, stem: str, env: str,
                  higher_x_better: bool = False, log_x: bool = False) -> list[Path]:
    """Accuracy (mean ± std over seeds) against a cost or speed column; Pareto front marked, points labelled."""
    data = board[[x_col, y_col]].dropna()
    if data.empty:
        return []
    std = board.get(f"{y_col} std", pd.Series(0.0, index=board.index)).reindex(data.index).fillna(0.0)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    xs, ys = data[x_col].tolist(), data[y_col].tolist()
    front = pareto_front(xs, ys, higher_x_better)
    colors = ["tab:red" if i in front else "tab:blue" for i in range(len(xs))]
    ax.errorbar(xs, ys, yerr=std.tolist(), fmt="none", ecolor="#999999", capsize=3, zorder=1)
    ax.scatter(xs, ys, c=colors, s=45, zorder=2)
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="tab:red", lw=1.2, zorder=1,
            label="Pareto front")
    ax.scatter([], [], c="tab:blue", s=45, label="dominated")
    if log_x:
        ax.set_xscale("log")
    _label_points(ax, list(data.index), xs, ys)
    better = "higher is better" if higher_x_better else "lower is better"
    ax.set_xlabel(f"{_axis_label(x_col)} ({better})")
    ax.set_ylabel(f"{y_col}, mean ± std over seeds")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out_dir, stem, env)


def _axis_label(col: str) -> str:
    m = re.match(r"(infer|train) (\S+)( \S+)? b(\d+) \(img/s\)", col)
    if not m:
        return col
    mode = "inference" if m.group(1) == "infer" else "training"
    return f"{mode} throughput, {m.group(2).upper()}{m.group(3) or ''}, batch {m.group(4)} (images/s)"


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
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                    ha="right" if dx < 0 else "left", fontweight="bold" if name == BASELINE else "normal")


def plot_throughput_vs_batch(long: pd.DataFrame, backbone: str, out_dir: Path, env: str,
                             mode: str = "inference", prefix: str = "") -> list[Path]:
    """Throughput (images/s) against batch size, one line per variant, one figure per device."""
    part = long[(long["backbone"] == backbone) & (long["mode"] == mode) & long["batch_size"].notna()]
    paths: list[Path] = []
    for device in dict.fromkeys(part["device"]):
        sub = part[part["device"] == device]
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
        ax.set_ylabel("throughput (images/s, median)")
        ax.set_title(f"{backbone}: {mode} throughput on {device.upper()}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        paths += _save(fig, out_dir, f"{prefix}throughput-vs-batch_{_slug(backbone)}_{_slug(device)}_{mode}", env)
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
    """Every figure the rows of one suite support; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment_summary(df)
    boards = leaderboards(df)
    long = metric_rows(df)
    prefix = f"{_slug(suite)}_" if suite else ""
    paths: list[Path] = []
    for backbone, board in boards.items():
        acc_cols = [c for c in board.columns if c.startswith("top-1") and c.endswith("(%)")]
        speed_cols = [c for c in board.columns if c.startswith("infer ") and c.endswith("(img/s)")]
        speed_col = max(speed_cols, key=lambda c: int(re.search(r" b(\d+) ", c).group(1)), default=None)
        for acc in acc_cols:
            dataset = acc.split()[1]
            xs = [("params (M)", "params", False, False), ("MACs (M)", "macs", False, False)]
            if speed_col:
                xs.append((speed_col, "throughput", True, False))
            for x_col, tag, higher, logx in xs:
                if x_col in board.columns:
                    paths += plot_tradeoff(board, x_col, acc, f"{backbone} on {dataset}: accuracy vs {tag}", out,
                                           f"{prefix}acc-vs-{tag}_{_slug(backbone)}_{_slug(dataset)}", env, higher, logx)
        for mode in ("inference", "train"):
            paths += plot_throughput_vs_batch(long, backbone, out, env, mode, prefix)
    for row in df[(df["kind"] == "layers") & (df["status"] == "ok")].itertuples():
        title = f"{row.backbone} / {row.variant}: per-layer latency (batch {row.options.get('batch_size', 1)}, deployed)"
        paths += plot_layer_breakdown(row.values.get("layers", []), title, out,
                                      f"{prefix}layers_{_slug(row.backbone)}_{_slug(row.variant)}", env)
    return [p for p in paths if p.suffix in (".png", ".svg")]
