"""Speed figures: the speed a figure may show per variant (the in-cell ratio to the baseline, else absolute
throughput of one run) with its interval, and throughput against batch size."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from ..measures.speed import speed_setting
from .figure_files import plain, save_figure, slug
from .leaderboard import BASELINE
from .marks import flag_marks

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")  # one shape per variant: readable in grey print


def speed_axis(rec: pd.Series, relative: bool = True) -> str:
    """The x axis label of a trade-off figure against speed: the in-cell ratio to the baseline, or absolute."""
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
        paths += save_figure(fig, out_dir, f"{prefix}throughput-vs-batch_{slug(backbone)}_{slug(setting)}_{mode}", env,
                       caption, {**(tags or {}), "Backbone": backbone})
    return paths


def largest_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """The throughput records of the first speed setting (plain fp32 preferred) at its largest batch."""
    if rows.empty:
        return rows
    plain = rows[(rows["precision"] == "fp32") & ~rows["channels_last"].astype(bool) & ~rows["compile"].astype(bool)]
    rows = plain if not plain.empty else rows
    rows = rows[rows["device"] == rows["device"].iloc[0]]
    return rows[rows["batch_size"] == rows["batch_size"].max()]
