"""Reporting: typed records from stored rows, leaderboards (md, csv, json, html), statistics, run history and plots.

Reads the store through pandas; may import execution.store, measures and models; never the runner or cli.
"""
