"""Execution: suite files -> cells, the runner and its executors (in-process, subprocess, Ray), process
isolation, memory limits and the SQLite results store.

May import models, measures, metrics, data and training; never reporting or cli.
"""
