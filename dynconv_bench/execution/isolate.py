"""Run a function in a fresh Python subprocess, so allocator state and threads never leak.

The child is a new interpreter (`python -c _BOOT`), not a fork: it imports
only what the measurement needs and does not depend on how the parent's `__main__` was started.
It dies with its parent, and it runs under the memory cap of the cell in flight (see dynconv_bench.execution.limits).
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

from .limits import MemoryCap, active_cap, cap_bytes, rss_bytes

_USE_ACTIVE = object()
# The child's first statements, before its slow imports (torch, timm): on Linux, die with the parent from the start.
_BOOT = ("import sys\n"
         "if sys.platform.startswith('linux'):\n"
         "    import ctypes, os, signal\n"
         "    try:\n"
         "        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG\n"
         "    except (OSError, AttributeError):\n"
         "        pass\n"
         "    if os.getppid() != int(sys.argv[1]):\n"
         "        os._exit(1)\n"
         "from dynconv_bench.execution.isolate import _child\n"
         "_child(sys.argv[2])\n")


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None,
                 memory_cap: MemoryCap | object = _USE_ACTIVE, cuda: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Call the module-level function `fn(*args, **kwargs)` in a fresh interpreter and return its dict.

    A crash, a kill (e.g. by the OOM killer), an exception, a timeout or going over `memory_cap` (default:
    what this process leaves of the cap of the cell it runs) becomes `{"status": "failed", "error": ...}`.
    """
    cap = device_cap = memory_cap
    if memory_cap is _USE_ACTIVE:  # the cell's cap covers this process and the child together
        device_cap, limit = active_cap(), cap_bytes(active_cap())
        cap = None if limit is None else max(limit - rss_bytes(), 1)
    payload = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs, cap, device_cap, cuda, os.getpid()))
    with tempfile.TemporaryDirectory(prefix="dynconv_isolate_") as tmp:
        result_path = Path(tmp) / "result.pkl"
        proc = subprocess.Popen(worker_command(os.getpid(), result_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
        try:
            _, stderr = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"status": "failed", "error": f"timed out after {timeout:g} s"}
        except BaseException:  # e.g. Ctrl-C: never leave the child behind
            proc.kill()
            proc.wait()
            raise
        if result_path.is_file():
            return pickle.loads(result_path.read_bytes())
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited {proc.returncode}"
        return {"status": "failed", "error": f"the measurement subprocess {how} (out of memory?) {tail[0]}".strip()}


def worker_command(parent_pid: int, result_path: str | Path) -> list[str]:
    """The command line of a worker of process `parent_pid` (it reads its call, pickled, from stdin)."""
    return [sys.executable, "-c", _BOOT, str(parent_pid), str(result_path)]


def _child(result_path: str) -> None:
    from .limits import MemoryGuard, die_with_parent

    module, qualname, args, kwargs, cap, device_cap, cuda, parent = pickle.loads(sys.stdin.buffer.read())
    die_with_parent(parent)

    def write(out: dict[str, Any]) -> None:
        tmp = Path(result_path + ".part")
        tmp.write_bytes(pickle.dumps(out))
        tmp.replace(result_path)

    def over_cap(message: str) -> None:
        write({"status": "failed", "error": message})
        os._exit(3)

    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    with MemoryGuard(cap, cuda=cuda, on_exceed=over_cap, device_cap=device_cap) as guard:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            out = {"status": "failed", "error": guard.refused(exc) or f"{type(exc).__name__}: {exc}"[:2000]}
    if isinstance(out, dict) and out.get("status") == "failed" and guard.refused(str(out.get("error") or "")):
        out = {**out, "error": guard.refused(str(out.get("error")))}  # the measurement caught the refusal itself
    write(out)


if __name__ == "__main__":
    _child(sys.argv[1])
