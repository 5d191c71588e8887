"""JSON: the numeric leaderboards (first environment, then the others), the kinds' sections and the failed cells."""

from __future__ import annotations

import json
from typing import Any

from ..leaderboard import BASELINE
from ..report import Part, Report

SUFFIX = "json"
HELP = "the numeric tables, notes and failures as JSON"


def render_comparison(df: Any, run_a: str, run_b: str) -> str:
    """`report --compare`: the comparison's rows (ASCII: \\u202e, never the raw character)."""
    return df.to_json(orient="records", indent=2) + "\n"


def _boards(p: Part) -> dict[str, Any]:
    return {b: json.loads(t.reset_index().to_json(orient="records")) for b, t in p.boards.items()}


def render(report: Report) -> str:
    parts = report.parts
    first = parts[0] if parts else None
    data = {"suite": report.suite, "baseline": BASELINE,
            "environment": first.footer() if first else "environment: not recorded",
            "leaderboards": _boards(first) if first else {},
            "other_environments": [{"id": p.section.environment_id, "environment": p.footer(),
                                    "leaderboards": _boards(p)} for p in parts[1:]],
            "failed": json.loads(report.fails.to_json(orient="records"))}
    for title, table, _ in report.sections:
        data[title.lower()] = json.loads(table.reset_index().to_json(orient="records"))
    return json.dumps(data, indent=2)
