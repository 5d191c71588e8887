"""The marks a leaderboard cell may end with (`!` load, `~` other runs, `‡` waited, `§` processes disagree, `*`
significant, `†` near chance), what each says, and the note under every table."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..measures import metric_spec

NEAR_CHANCE_POINTS = 5.0  # a top-1 this close to guessing says nothing about the variant


MARKS = {  # the marks a leaderboard cell may end with, and what each says
    "!": "measured while the 1-minute load average exceeded the core count by more than half a core",
    "~": "a timed ratio between rows of different runs",
    "‡": ("wall time per run above 1.5 x the process CPU time per run / threads: the run waited (for a core, "
          "memory, I/O) rather than worked"),
    "§": ("the ratios of the cell's worker processes vary with a standard deviation over 10% of their mean "
          "(pyperf's rule): read the range, not the median (on CPU: see results/README.md on the allocator's state)"),
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
        "speed-up ({b}'s latency / the row's). Speed cells timed round-robin with `{b}` in one process "
        "(`interleave` rounds) show the median of their per-round ratios, and where timed in several fresh "
        "worker processes (`processes`) the median of the per-process ratios followed by their range; other "
        "ratios compare rows measured in "
        f"the same environment. `!`: {MARKS['!']}; `~`: {MARKS['~']}. Accuracy: mean ± sample std over "
        "n seeds (std `-` for one seed); vs {b}: difference of means in points with its 95% confidence interval "
        "(Welch t over seeds), * where the interval excludes 0; no interval with fewer than 2 seeds a side.")


def mark_notes(shown: pd.DataFrame) -> list[str]:
    """Notes for the marks of a formatted table that NOTE does not explain (near chance, waited, spread)."""
    cells = [str(v) for col in shown.columns for v in shown[col]]
    return [f"`{m}`: {MARKS[m]}." for m in ("†", "‡", "§") if any(m in c for c in cells)]


def cell_marks(sub: pd.DataFrame, baseline: str) -> dict[str, str]:
    """Per variant: `!` measured under load; `‡` it waited; `§` its processes disagreed (sd over 10%); `~` a timed
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
