"""Run a function in a fresh Python subprocess, so allocator state and threads never leak.

The child is a new interpreter (`python -c _BOOT`), not a fork: it imports
only what the measurement needs and does not depend on how the parent's `__main__` was started.
It dies with its parent, and it runs under the memory cap of the cell in flight (see `limits`).
Its start-up (importing torch, timm and the variants: seconds) is not counted in a call's `timeout`: the child
says when it is ready, and the timeout runs from then.
"""

from __future__ import annotations

import importlib
import os
import pickle
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .limits import MemoryCap, active_cap, available_memory, cap_bytes, machine_memory, rss_bytes

_USE_ACTIVE = object()
STARTUP_TIMEOUT_S = 600.0  # a child that has not imported what it needs by then is stuck
_READY = b"R"  # what the child writes to its stdout once its imports are done
# what each deadly signal means, for the error text of a child that died of one
_SIGNALS = {"SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGABRT": "aborted", "SIGILL":
            "illegal instruction", "SIGFPE": "floating-point exception", "SIGTERM": "terminated", "SIGINT":
            "interrupted", "SIGKILL": "killed", "SIGHUP": "hung up", "SIGPIPE": "broken pipe", "SIGXCPU":
            "CPU time limit exceeded"}
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
         "from dynconv_bench.execution.processes.isolate import _child\n"
         "_child(sys.argv[2])\n")


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None,
                 memory_cap: MemoryCap | object = _USE_ACTIVE, cuda: bool = False,
                 startup_timeout: float | None = STARTUP_TIMEOUT_S, extra_env: Mapping[str, str] | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """Call the module-level function `fn(*args, **kwargs)` in a fresh interpreter and return its dict.

    The child inherits this process's environment with `extra_env` on top (e.g. allocator settings that glibc
    reads only at start-up).
    `timeout` bounds the call, from the moment the child has finished its imports (`startup_timeout` bounds
    those). A crash, a kill (e.g. by the OOM killer), an exception, a timeout or going over `memory_cap`
    (default: what this process leaves of the cap of the cell it runs) becomes `{"status": "failed", "error": ...}`.
    """
    cap = device_cap = memory_cap
    if memory_cap is _USE_ACTIVE:  # the cell's cap covers this process and the child together
        device_cap, limit = active_cap(), cap_bytes(active_cap())
        cap = None if limit is None else max(limit - rss_bytes(), 1)
    payload = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs, cap, device_cap, cuda, os.getpid()))
    with tempfile.TemporaryDirectory(prefix="dynconv_isolate_") as tmp:
        result_path = Path(tmp) / "result.pkl"
        with open(Path(tmp) / "stderr", "w+b") as err:  # a file: a chatty child cannot block on a full pipe
            env = {**os.environ, **(extra_env or {}), "PYTHONWARNINGS": "ignore"}
            proc = subprocess.Popen(worker_command(os.getpid(), result_path), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, env=env)
            try:
                started = time.monotonic()
                proc.stdin.write(payload)
                proc.stdin.close()
                proc.stdin = None  # communicate() must not flush it again
                ready = _wait_ready(proc, startup_timeout)
                startup = time.monotonic() - started
                if ready is None:
                    proc.kill()
                    proc.communicate()
                    return {"status": "failed", "error": f"the measurement subprocess did not start within "
                                                         f"{startup_timeout:g} s (importing torch and the models)"}
                proc.communicate(timeout=timeout if ready else None)  # not ready: it is ending
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return {"status": "failed", "error": f"timed out after {timeout:g} s (the measurement alone; the "
                                                     f"worker's start-up, {startup:.1f} s, is not counted, but "
                                                     f"processes the measurement starts itself are)"}
            except BaseException:  # e.g. Ctrl-C: never leave the child behind
                proc.kill()
                proc.wait()
                raise
            if result_path.is_file():
                return pickle.loads(result_path.read_bytes())
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
        how = death_text(proc.returncode, capped=cap is not None)
        return {"status": "failed", "error": f"the measurement subprocess {how} {tail[0]}".strip()}


def _wait_ready(proc: subprocess.Popen, limit: float | None) -> bool | None:
    """True once the child says it is ready, False if it ended first, None if `limit` seconds passed."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(limit):
            return None
    return os.read(proc.stdout.fileno(), 1) == _READY


def death_text(returncode: int, capped: bool = False) -> str:
    """How a child ended, in words: its exit status, or the signal that killed it and what that signal means.

    A child that goes over its memory cap writes its own failure and exits, so a SIGKILL is never the cap:
    with a cap (`capped`) the text says the cap was not reached; "out of memory?" is suggested only when the
    machine is low on memory now (the kernel's OOM killer). A segfault or an abort says so instead."""
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"was killed by signal {-returncode}"
    text = f"was killed by signal {-returncode} ({name}: {_SIGNALS.get(name, 'signal')})"
    if name == "SIGKILL":
        if _memory_low():
            text += " (the machine is low on memory: the kernel's OOM killer?)"
        elif capped:
            text += " (by another process: the memory watcher did not see the cell's cap reached)"
    return text


def _memory_low() -> bool:
    try:
        return available_memory() < 0.1 * machine_memory()
    except (OSError, ValueError):
        return False


def worker_command(parent_pid: int, result_path: str | Path) -> list[str]:
    """The command line of a worker of process `parent_pid` (it reads its call, pickled, from stdin)."""
    return [sys.executable, "-c", _BOOT, str(parent_pid), str(result_path)]


def _child(result_path: str) -> None:
    from .limits import MemoryGuard, die_with_parent

    ready_fd = os.dup(1)
    os.dup2(2, 1)  # what the measurement prints goes to stderr; stdout carries the ready byte only
    module, qualname, args, kwargs, cap, device_cap, cuda, parent = pickle.loads(sys.stdin.buffer.read())
    die_with_parent(parent)
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    _warm_imports()
    os.write(ready_fd, _READY)  # the parent's timeout counts from here
    os.close(ready_fd)

    def write(out: dict[str, Any]) -> None:
        tmp = Path(result_path + ".part")
        tmp.write_bytes(pickle.dumps(out))
        tmp.replace(result_path)

    def over_cap(message: str) -> None:
        write({"status": "failed", "error": message})
        os._exit(3)

    with MemoryGuard(cap, cuda=cuda, on_exceed=over_cap, device_cap=device_cap) as guard:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            out = {"status": "failed", "error": guard.refused(exc) or f"{type(exc).__name__}: {exc}"[:2000]}
    if isinstance(out, dict) and out.get("status") == "failed" and guard.refused(str(out.get("error") or "")):
        out = {**out, "error": guard.refused(str(out.get("error")))}  # the measurement caught the refusal itself
    write(out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the result is written: skip the interpreter's teardown (about 2 s with torch and timm loaded)


def _warm_imports() -> None:
    """Import what every measurement needs (torch, timm, the registered variants) before saying ready."""
    try:
        from ...models.registry import list_variants

        list_variants()
    except Exception:  # noqa: BLE001 - the call itself will report what is broken
        pass


if __name__ == "__main__":
    _child(sys.argv[1])
