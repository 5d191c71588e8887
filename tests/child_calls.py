"""Functions tests run in a fresh interpreter (execution.processes.isolate.run_isolated), in a module that imports nothing
heavy, so the child starts in a fraction of a second."""

from __future__ import annotations


def malloc_of_child() -> dict:
    """The glibc malloc tunables the child started with."""
    from dynconv_bench.metrics.env import allocator_settings

    return {"status": "ok", "allocator": allocator_settings()}


def killed_by_sigkill() -> dict:
    """Ends the child as `kill -9` from outside would."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {"status": "ok"}


def sleeps_past_any_timeout(cell: dict, plugins: list, calibration: object = None) -> dict:
    """A cell function that never finishes in time: the timeout, not the cell, decides the result."""
    import time

    time.sleep(60)
    return {"values": None, "status": "ok"}
