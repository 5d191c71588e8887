"""Run a measurement in a fresh Python subprocess, so allocator state and threads never leak.

The child is a new interpreter (`python -m dynconv_bench.metrics.isolate`), not a fork: it imports
only what the measurement needs and does not depend on how the parent's `__main__` was started.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """Call the module-level function `fn(*args, **kwargs)` in a fresh interpreter and return its dict.

    A crash, a kill (e.g. by the OOM killer), an exception or a timeout becomes
    `{"status": "failed", "error": ...}` instead of an exception in the caller.
    """
    payload = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs))
    with tempfile.TemporaryDirectory(prefix="dynconv_isolate_") as tmp:
        result_path = Path(tmp) / "result.pkl"
        cmd = [sys.executable, "-m", "dynconv_bench.metrics.isolate", str(result_path)]
        try:
            proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"timed out after {timeout} s in the measurement subprocess"}
        if result_path.is_file():
            return pickle.loads(result_path.read_bytes())
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited {proc.returncode}"
        return {"status": "failed", "error": f"the measurement subprocess {how} (out of memory?) {tail[0]}".strip()}


def _child(result_path: str) -> None:
    module, qualname, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:
        out = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    Path(result_path).write_bytes(pickle.dumps(out))


if __name__ == "__main__":
    _child(sys.argv[1])
