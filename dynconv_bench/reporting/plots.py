"""Every figure of a suite (PNG, SVG with real text, PDF), per environment: accuracy trade-offs with the Pareto
front (tradeoff_figure.py), throughput vs batch (speed_figure.py), per-layer latency (layers_figure.py). No caption
is drawn into a figure: it travels in the files' metadata (figure_files.py), and the HTML and LaTeX reports print
it under the figure.

Every text a user chose (variant, backbone, dataset, layer names) is drawn as plain text: `plain` shows control and
format characters as escapes and escapes `$`, so matplotlib never parses it as mathtext, and figures are drawn with
`text.usetex` off. Figures are written through `files.replacing` (a figure name that is a symbolic link is refused,
never followed) into a folder that is not itself a link (`make_folder(..., no_link=True)`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..files import make_folder
from .environments import environment_sections, environment_summary
from .figure_files import FORMATS, PLAIN_TEXT, slug
from .layers_figure import layer_plots
from .rows import chance_levels, metric_rows
from .speed_figure import largest_batch, plot_throughput_vs_batch, speed_axis, speed_points
from .tradeoff_figure import plot_tradeoff


def make_plots(df: pd.DataFrame, out_dir: str | Path, suite: str | None = None) -> list[Path]:
    """Every figure the rows of one suite support, per environment; returns the written paths.

    The environment of the latest row keeps the plain file names; another one's files start with
    `env-<id>_`, so that no figure mixes rows of two environments.
    """
    out = make_folder(out_dir, "figures", no_link=True)
    paths: list[Path] = []
    with plt.rc_context(PLAIN_TEXT):
        for i, section in enumerate(environment_sections(df)):
            prefix = (f"{slug(suite)}_" if suite else "") + (f"env-{section.environment_id}_" if i else "")
            paths += _section_plots(section.rows, out, prefix,
                                    {"Suite": suite or "", "Environment": section.environment_id})
    return [p for p in paths if p.suffix.lstrip(".") in FORMATS]


def _section_plots(df: pd.DataFrame, out: Path, prefix: str, tags: Mapping[str, str]) -> list[Path]:
    """The figures of one environment's rows: per backbone the trade-offs and speed figures, then the layers'."""
    env = environment_summary(df)
    long = metric_rows(df)
    chance = chance_levels(df)
    paths: list[Path] = []
    for backbone in dict.fromkeys(long["backbone"]):
        part = long[long["backbone"] == backbone]
        xs: list[tuple] = [(part[part["metric"] == "params"], "params (M)", "params", False),
              (part[part["metric"] == "macs"], "MACs (M per image, trained form)", "macs", False)]
        speed = largest_batch(part[(part["metric"] == "throughput") & (part["mode"] == "inference")])
        shown = speed_points(speed) if not speed.empty else None
        if shown is not None:
            value, marks, relative = shown
            xs.append((speed.assign(value=speed["variant"].map(value)), speed_axis(speed.iloc[0], relative),
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
                                       f"{prefix}acc-vs-{tag}_{slug(backbone)}_{slug(dataset)}", env, higher,
                                       chance=chance.get(str(dataset)), tags={**tags, "Backbone": backbone})
        for mode in ("inference", "train"):
            paths += plot_throughput_vs_batch(long, backbone, out, env, mode, prefix, tags)
    paths += layer_plots(long, out, prefix, env, tags)
    return paths
