"""Resource limits of a cell: a memory cap checked against the resident set, and workers that die with their parent.

The cap is watched from a thread that reads this process's resident set size every few milliseconds
(no cgroups needed). In a worker subprocess the thread ends the process at once and the cell is a failed
result naming the cap; in the runner's own process it raises `MemoryCapExceeded` in the measuring thread,
which Python delivers between bytecodes (between layers of a model: one op that allocates far past
the cap can still overshoot there; `run --subprocess` enforces the cap hard). On CUDA the caching
allocator is capped to the same fraction of the device's memory.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError

DEFAULT_MEMORY_CAP = 0.8  # of the machine's memory (or of the cgroup limit, when lower)
MemoryCap = int | float | None  # bytes (int), a fraction of the machine's memory (float), or no cap
_UNITS = {"kb": 1e3, "kib": 2**10, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30, "tb": 1e12, "tib": 2**40}
_ACTIVE: list[MemoryCap] = [None]  # the cap of the cell now running here: isolated subprocesses inherit it


class MemoryCapExceeded(MemoryError):
    """A cell's process went over its memory cap."""


def parse_memory_cap(value: Any) -> MemoryCap:
    """Bytes from 4000000000 / "4GiB" / "512MB", a fraction from 0.5 / "50%", None from "none"; else UserError."""
    usage = "bytes (e.g. 4GiB, 512MB), a fraction of the machine's memory (e.g. 0.5, 50%) or none"
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|[kmgt]?i?b?)", value.strip().lower())
        if not m:
            raise UserError(f"memory cap {value!r} must be {usage}")
        number, unit = float(m[1]), m[2]
        if unit == "" and number > 1 and not number.is_integer():
            raise UserError(f"memory cap {value!r} must be {usage}")
        if unit == "%" or (unit == "" and number <= 1):
            value = number / 100 if unit == "%" else number
        else:
            value = int(number * (_UNITS[unit[0] + ("ib" if "i" in unit else "b")] if unit not in ("", "b") else 1))
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise UserError(f"memory cap fraction {value!r} must be in (0, 1]; or give {usage}")
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"memory cap {value!r} must be {usage}")
    return value


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's total, or the cgroup limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def cap_bytes(cap: MemoryCap) -> int | None:
    """The cap in bytes of host memory."""
    if cap is None:
        return None
    return int(cap * machine_memory()) if isinstance(cap, float) else int(cap)


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def active_cap() -> MemoryCap:
    return _ACTIVE[0]


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class MemoryGuard:
    """Watch this process's resident memory while a cell runs; see the module doc for what happens over the cap.

    `on_exceed(message)` (worker subprocesses) is called from the watch thread and must not return;
    without it the measuring thread gets `MemoryCapExceeded`. `error` holds the message afterwards.
    """

    def __init__(self, cap: MemoryCap, cuda: bool = False, on_exceed: Callable[[str], None] | None = None,
                 interval: float = 0.01, device_cap: MemoryCap = None) -> None:
        self.cap = cap
        self.device_cap = cap if device_cap is None else device_cap  # the CUDA allocator's cap
        self.limit = cap_bytes(cap)
        self.cuda = cuda
        self.on_exceed = on_exceed
        self.interval = interval
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = threading.get_ident()
        self._cuda_fraction: float | None = None

    def __enter__(self) -> MemoryGuard:
        self._saved = _ACTIVE[0]
        _ACTIVE[0] = self.cap
        if self.limit is None:
            return self
        if self.cuda:
            self._cap_cuda()
        self._thread = threading.Thread(target=self._watch, name="dynconv-memory-guard", daemon=True)
        self._thread.start()
        return self

    def _cap_cuda(self) -> None:
        import torch

        if not torch.cuda.is_available():
            return
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        cap = self.device_cap
        frac = cap if isinstance(cap, float) else min(1.0, cap / total)  # type: ignore[operator]
        torch.cuda.set_per_process_memory_fraction(frac)
        self._cuda_fraction = frac

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss = rss_bytes()
            if rss > self.limit:  # type: ignore[operator]
                self.error = (f"memory cap exceeded: resident memory {_gib(rss)} > cap {_gib(self.limit)} "  # type: ignore[arg-type]
                              f"(set with --memory-cap or the suite's memory_cap)")
                if self.on_exceed is not None:
                    self.on_exceed(self.error)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target),
                                                           ctypes.py_object(MemoryCapExceeded))
                return

    def __exit__(self, exc_type: object, *rest: object) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            # an exception sent after the measured code had returned must not fire later, somewhere else
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target), None)
        if self._cuda_fraction is not None:
            import torch

            torch.cuda.set_per_process_memory_fraction(1.0)
        _ACTIVE[0] = self._saved
        return exc_type is MemoryCapExceeded


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel kill this process when its parent dies (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
