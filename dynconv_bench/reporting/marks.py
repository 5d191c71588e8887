"""The marks a leaderboard cell may end with (`!` load, `~` other runs, `‡` waited, `§` a wide speed interval, `*`
significant, `†` near chance), what each says, and the note under every table."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..measures import metric_spec
from ..metrics.timing_result import WIDTH_WARNING

NEAR_CHANCE_POINTS = 5.0  # a top-1 this close to guessing says nothing about the variant
MIN_SEEDS = 3  # seeds a side for a t interval of an accuracy difference (over 2 it spans about +-8 points)


MARKS = {  # the marks a leaderboard cell may end with, and what each says
    "!": "measured while the 1-minute load average exceeded the core count by more than half a core",
    "~": "a timed ratio between rows of different runs",
    "‡": ("wall time per run above 1.5 x the process CPU time per run / threads: the run waited (for a core, "
          "memory, I/O) rather than worked"),
    "§": (f"the 95% interval of the cell's ratio is wider than {100 * WIDTH_WARNING:.0f}% of the ratio: read the "
          "interval, not the point (rows of older versions, without per-round ratios: their worker processes' ratios "
          "vary with a standard deviation over 10% of their mean, pyperf's rule; on CPU see results/README.md on the "
          "allocator's state)"),
    "*": "the 95% confidence interval of the difference excludes 0",
    "†": (f"top-1 within {NEAR_CHANCE_POINTS:g} points of chance (100 / classes), or with a 95% interval of the "
          "mean over seeds that reaches chance: the model learned little or nothing, and its row says nothing about "
          "the variant"),
}
FLAG_MARKS = {"load": "!", "waited": "‡", "spread": "§"}  # a timed record's flags and the marks that show them


def flag_marks(flag_sets: Iterable[Iterable[str] | None]) -> str:
    """The marks of every flag that any of `flag_sets` (one per record) carries, in FLAG_MARKS order."""
    sets = [tuple(f or ()) for f in flag_sets]
    return "".join(mark for flag, mark in FLAG_MARKS.items() if any(flag in f for f in sets))


NOTE = ("In brackets (x): the ratio to `{b}`; each header says which way is better, and latency's is the "
        "speed-up ({b}'s latency / the row's). Speed cells timed round-robin with `{b}` (`interleave` rounds, in "
        "`processes` fresh worker processes) show the ratio measured in the cell, the median of every round of every "
        "process, followed by its 95% interval (a hierarchical percentile bootstrap: processes resampled, then "
        "rounds within each; fixed seed), widened where needed to hold the point; it is the headline. Their "
        "img/s is {b}'s measured throughput (its own cell) x the row's in-cell ratio, and their latency {b}'s "
        "measured latency / the row's speed-up, so that every speed column sorts the rows as the ratios do; each "
        "row's own measured value is kept in the CSV and JSON (`... measured`). `{b}` is the reference (ref): its "
        "bracket holds its A/A measurement ({b} against itself in its cell) with its interval, the noise floor of "
        "that cell. Other ratios compare rows measured in "
        f"the same environment. `!`: {MARKS['!']}; `~`: {MARKS['~']}. Accuracy: mean ± sample std over "
        "n seeds (std `-` for one seed); vs {b}: difference of means in points with its 95% confidence interval "
        f"(Welch t over seeds), * where the interval excludes 0, where both sides have {MIN_SEEDS} seeds or more; "
        "with fewer, no interval (see the note under the table where a range of seed pairs is shown).")
LEGACY_SPEED_NOTE = ("Speed cells stored by older versions (without per-round ratios) show the median of their "
                     "worker processes' ratios and the min-max range of those (over 3 processes about a 75% "
                     "interval, not a 95% one); `§` on them: the processes' ratios vary with a standard deviation "
                     "over 10% of their mean.")
NO_REFERENCE_NOTE = ("`{col}`: no `{b}` cell to scale from: each row shows its own measured value beside its "
                     "in-cell ratio (these values need not sort as the ratios do).")
SEEDS_NOTE = ("Accuracy vs static with fewer than {n} seeds on a side: no t interval (over 2 seeds a 95% interval "
              "spans about ±8 points and may pass 100%); `seed pairs` gives the range (min-max) of the differences "
              "between the seeds' values, a description of the seeds, not an interval, and no `*`.")


def mark_notes(shown: pd.DataFrame) -> list[str]:
    """Notes for the marks of a formatted table that NOTE does not explain (near chance, waited, spread), then
    the notes `format_table` left in `shown.attrs["notes"]` (older speed rows, too few seeds for an interval)."""
    cells = [str(v) for col in shown.columns for v in shown[col]]
    return ([f"`{m}`: {MARKS[m]}." for m in ("†", "‡", "§") if any(m in c for c in cells)]
            + list(shown.attrs.get("notes", [])))


def cell_marks(sub: pd.DataFrame, baseline: str) -> dict[str, str]:
    """Per variant: `!` measured under load; `‡` it waited; `§` its ratio's interval is too wide; `~` a timed
    value whose ratio compares rows of different runs."""
    out: dict[str, str] = {}
    base_runs = set(sub[sub["variant"] == baseline]["run_id"].dropna())
    timed = metric_spec(sub["metric"].iloc[0]).timed
    for variant, rows in sub.groupby("variant"):
        mark = flag_marks(rows["flags"])
        own_runs = set(rows["run_id"].dropna())
        if (timed and variant != baseline and base_runs and own_runs and own_runs != base_runs
                and rows["ratio"].isna().any()):
            mark += "~"
        if mark:
            out[variant] = mark
    return out
