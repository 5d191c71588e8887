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
