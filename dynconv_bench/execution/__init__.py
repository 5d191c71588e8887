"""Execution: suite files -> cells, the runner and its executors (in-process, subprocess, Ray), calls in fresh
processes under a memory cap (`processes`) and the SQLite results store.

May import models, measures, metrics, data and training; never reporting or cli.
"""
