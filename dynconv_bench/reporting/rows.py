"""The store's rows as a report reads them: one suite's current rows, and the long table of their records (one row
per metric value with its dimensions) that the leaderboards and figures are built from."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import UserError, unknown_choice
from ..measures import records_of
from .environments import environment_id


def load_results(store: Any, suite: str | None = None, current: bool = True) -> pd.DataFrame:
    """Rows of the store (a ResultStore or a path) for `suite`, one per cell, with status ok or failed.

    With `current` (the default), only each cell's rows of the code and config measured last: older ones are
    listed in `attrs["superseded"]` (reporting/sources.py), never pooled into a mean with newer ones.
    """
    from ..execution.store import ResultStore
    from .sources import current_rows

    own = not isinstance(store, ResultStore)
    db = ResultStore(store, readonly=True) if own else store
    try:
        suites = db.suites()
        if suite is not None and suite not in suites:
            raise unknown_choice("suite in the store", suite, suites) if suites else UserError(
                f"the results store {db.path} holds no results yet (run a suite first)")
        df = db.dataframe(suite=suite)
        df.attrs["malformed"] = list(db.malformed)  # row ids left out: their JSON did not decode
        df.attrs["claims"] = db.open_claims_of(suite)  # cells being measured now, or held by a stalled run
        return current_rows(df) if current else df
    finally:
        if own:
            db.close()


def default_suite(df: pd.DataFrame) -> str:
    """The suite of the most recently finished row."""
    if df.empty:
        raise UserError("the results store holds no results yet (run a suite first)")
    return str(df.sort_values("finished")["suite"].iloc[-1])


# the columns every long table has; each record's dimensions (device, batch_size, dataset, ...) add their own
_LONG_COLUMNS = ["backbone", "variant", "id", "environment_id", "run_id", "metric", "unit", "label", "compare",
                 "order", "higher_is_better", "value", "flags", "ratio", "ratio_low", "ratio_high", "device", "mode",
                 "batch_size", "dataset"]


def metric_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of the records of every ok row: one row per (metric, value, unit, dimensions); `id` is the row's."""
    out: list[dict[str, Any]] = []
    for row in df[df["status"] == "ok"].itertuples(index=False):
        env = environment_id(row.environment)
        for rec in records_of(row.kind, row.options, row.values):
            out.append({"backbone": row.backbone, "variant": row.variant, "id": row.id, "environment_id": env,
                        "run_id": getattr(row, "run_id", None), "metric": rec.metric, "unit": rec.unit,
                        "label": rec.label, "compare": rec.compare, "order": rec.order,
                        "higher_is_better": rec.higher_is_better, "value": rec.value, "flags": rec.flags,
                        "ratio": rec.ratio, "ratio_low": rec.ratio_range[0] if rec.ratio_range else None,
                        "ratio_high": rec.ratio_range[1] if rec.ratio_range else None, **dict(rec.dims)})
    dims = sorted({k for row in out for k in row} - set(_LONG_COLUMNS))
    return pd.DataFrame.from_records(out, columns=_LONG_COLUMNS + dims)


def chance_levels(df: pd.DataFrame) -> dict[str, float]:
    """Top-1 of guessing (100 / classes) per dataset of the accuracy rows, where the classes are recorded."""
    long = metric_rows(df)
    chance = long[long["metric"] == "chance"]
    return {str(d): float(v) for d, v in chance.groupby("dataset")["value"].max().items()}
