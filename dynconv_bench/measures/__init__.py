"""Measurement kinds: one module per kind (its options, the function that measures, its typed result,
its leaderboard records and headline), found through a registry that plugins extend by entry point.

May import models, metrics, data and training; never execution, reporting or cli.
"""

from .base import (
                   KIND_GROUP,
                   Kind,
                   Metric,
                   Record,
                   Result,
                   check_options,
                   get_kind,
                   list_kinds,
                   metric_spec,
                   options_of,
                   record,
                   records_of,
                   register_kind,
)

__all__ = ["KIND_GROUP", "Kind", "Metric", "Record", "Result", "check_options", "get_kind", "list_kinds",
           "metric_spec", "options_of", "record", "records_of", "register_kind"]
