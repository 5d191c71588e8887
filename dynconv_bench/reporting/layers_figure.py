"""The per-layer latency figure: the slowest layers' median time per forward, the rest summed, beside the whole
forward of the same run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .figure_files import plain, save_figure, slug


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
    return save_figure(fig, out_dir, stem, env, caption, tags)


def layer_plots(long: pd.DataFrame, out: Path, prefix: str, env: str, tags: Mapping[str, str]) -> list[Path]:
    """One per-layer figure per layers row of the long table (`rows.metric_rows`), with the whole forward it timed."""
    paths: list[Path] = []
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
        paths += plot_layer_breakdown(table, title, out, f"{prefix}layers_{slug(backbone)}_{slug(variant)}", env,
                                      tags={**tags, "Backbone": backbone}, batch_size=batch, threads=threads,
                                      forward_ms=forward.get(False), hooked_forward_ms=forward.get(True))
    return paths
