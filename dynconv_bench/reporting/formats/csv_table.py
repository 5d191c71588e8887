"""CSV: the numeric leaderboards of every environment and backbone in one table, text made safe for spreadsheets."""

from __future__ import annotations

import pandas as pd

from ..escape import csv_frame
from ..report import Report

SUFFIX = "csv"
HELP = "one numeric table of every backbone (spreadsheet-safe text)"


def render_comparison(df: pd.DataFrame, run_a: str, run_b: str) -> str:
    """`report --compare`: the comparison's rows, escaped as the report's (formulas, bidi overrides)."""
    return csv_frame(df).to_csv(index=False)


def render(report: Report) -> str:
    frames = [t.reset_index().assign(backbone=b, environment=p.section.environment_id)
              for p in report.parts for b, t in p.boards.items()]
    if not frames:
        return ""
    full = pd.concat(frames, ignore_index=True)
    full = full[["environment", "backbone"] + [c for c in full.columns if c not in ("environment", "backbone")]]
    return csv_frame(full).to_csv(index=False)
