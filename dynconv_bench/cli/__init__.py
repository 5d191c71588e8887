"""The `dynconv-bench` command line: `main` parses, verb modules (models, run, export) do the work.

May import every other package of dynconv_bench; nothing imports it.
"""
