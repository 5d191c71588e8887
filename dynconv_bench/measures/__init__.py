"""Measurement kinds: one module per kind (its options, the function that measures, its typed result,
its leaderboard records and headline), found through a registry that plugins extend by entry point.

May import models, metrics, data and training; never execution, reporting or cli.
"""
