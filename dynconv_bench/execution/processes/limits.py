"""Resource limits of a cell: a memory cap on the resident set, and workers that die with their parent.

The cap holds in every executor mode. On Linux, CPU cells run under RLIMIT_DATA set to what the cap
leaves: an allocation past it is refused at once (torch raises, the cell fails naming the cap), however
large the one op that asks. A thread also reads the resident set size every few milliseconds (no cgroups
needed): in a worker subprocess it ends the process at once and the cell is a failed result naming the
cap; in the runner's own process it raises `MemoryCapExceeded` in the measuring thread. On CUDA the
caching allocator is capped to the same fraction of the device's memory (no data limit there: CUDA
reserves address space far past any cap), and the thread watches host memory.
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

from ...errors import UserError

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

DEFAULT_MEMORY_CAP = 0.8  # at most this fraction of the machine's memory (or of the cgroup limit, when lower)
DEFAULT_RESERVE = 0.15  # ... and the default leaves at least this fraction of it (and 2 GiB) to the rest of the machine
MIN_MEMORY_CAP = 64 * 2**20  # a cap under this cannot hold a Python process with torch loaded
MAX_MEMORY_CAP = 2**50  # 1 PiB: more than any machine has, and well inside what setrlimit accepts
MemoryCap = int | float | None  # bytes (int), a fraction of the machine's memory (float), or no cap
_UNITS = {"b": 1, "kb": 1e3, "kib": 2**10, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30, "tb": 1e12, "tib": 2**40,
          "pb": 1e15, "pib": 2**50}
_USAGE = ("bytes (e.g. 4GiB, 512MB), a fraction of the machine's memory (e.g. 0.5, 50%) or none; "
          "from 64 MiB to 1 PiB")
_ACTIVE: list[MemoryCap] = [None]  # the cap of the cell now running here: isolated subprocesses inherit it


class MemoryCapExceeded(MemoryError):
    """A cell's process went over its memory cap."""


def parse_memory_cap(value: Any) -> MemoryCap:
    """Bytes from "4GiB" / "512MB" / 4000000000, a fraction from 0.5 / "50%", None from "none"; else UserError."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|[kmgtp]i?b|b)?", value.strip().lower())
        if not m:
            raise UserError(f"memory cap {_shown(value)} must be {_USAGE}")
        number, unit = float(m[1]), m[2]
        if unit is None and number > 1:  # "2" was 2 bytes while "1" was 100%: a bare number is a fraction only
            raise UserError(f"memory cap {_shown(value)} needs a unit (e.g. {m[1]}GiB), or a fraction in (0, 1] of the "
                            f"machine's memory")
        if unit in ("%", None):
            value = number / 100 if unit == "%" else number
        elif number * _UNITS[unit] > MAX_MEMORY_CAP:  # also inf: a number of hundreds of digits
            raise UserError(f"memory cap {_shown(value)} is over the maximum 1 PiB; give {_USAGE}")
        else:
            value = int(number * _UNITS[unit])
    if isinstance(value, float):
        if not 0 < value <= 1:  # NaN too
            raise UserError(f"memory cap fraction {_shown(value)} must be in (0, 1]; or give {_USAGE}")
        if cap_bytes(value) < MIN_MEMORY_CAP:
            raise UserError(f"memory cap {_shown(value)} of this machine is {_gib(cap_bytes(value))}, under the minimum "
                            f"64 MiB")
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"memory cap {_shown(value)} must be {_USAGE}")
    if not MIN_MEMORY_CAP <= value <= MAX_MEMORY_CAP:
        raise UserError(f"memory cap {_shown(value)} bytes is outside [64 MiB, 1 PiB]; give {_USAGE}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


def default_memory_cap() -> int:
    """The cap when none is given: what the machine has available now minus a reserve, at most 80% of it.

    The reserve (15% of the machine's memory, at least 2 GiB) keeps the machine usable while a cell runs.
    """
    total = machine_memory()
    reserve = max(DEFAULT_RESERVE * total, 2 * 2**30)
    room = rss_bytes() + available_memory() - reserve
    return int(max(min(DEFAULT_MEMORY_CAP * total, room), MIN_MEMORY_CAP))


def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable; the total where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return min(int(line.split()[1]) * 1024, machine_memory())
    except (OSError, ValueError, IndexError):
        pass
    return machine_memory()


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
        self._saved_rlimit: tuple[int, int] | None = None
        self.data_limited = False  # whether RLIMIT_DATA held this process's allocations to the cap

    def __enter__(self) -> MemoryGuard:
        self._saved = _ACTIVE[0]
        _ACTIVE[0] = self.cap
        if self.limit is None:
            return self
        self._thread = threading.Thread(target=self._watch, name="dynconv-memory-guard", daemon=True)
        self._thread.start()
        if self.cuda:
            self._cap_cuda()
        else:  # CUDA reserves address space far past any RSS cap: no data limit in a process that may use it
            self._limit_data()
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

    def _limit_data(self) -> None:
        """Refuse allocations past the cap (RLIMIT_DATA): a single huge op fails at once instead of overshooting."""
        data = _vm_data()
        if resource is None or data is None:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = data + max(self.limit - rss_bytes(), 0)  # type: ignore[operator]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
        except (ValueError, OSError):
            return
        self._saved_rlimit = (soft, hard)
        self.data_limited = True

    def refused(self, error: BaseException | str) -> str | None:
        """The cap's message when `error` (an exception or its text) is an allocation the data limit refused."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if not self.data_limited or not (text.startswith("MemoryError") or "can't allocate memory" in text):
            return None
        first = text.splitlines()[0][:200] if text else "MemoryError"
        return (f"memory cap exceeded: resident memory {_gib(rss_bytes())} + a refused allocation > cap "
                f"{_gib(self.limit)} (set with --memory-cap or the suite's memory_cap; {first})")  # type: ignore[arg-type]

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
        if self._saved_rlimit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, self._saved_rlimit)
            self._saved_rlimit = None
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


def _vm_data() -> int | None:
    """Bytes of this process's data segment (what RLIMIT_DATA limits), None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def die_with_parent(parent_pid: int, every: float = 0.5) -> None:
    """End this process when its parent dies: the kernel's death signal (Linux) and a watchdog thread (anywhere).

    Exits at once if the parent is already gone.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:  # a reparented child sees another parent id
        while os.getppid() == parent_pid:
            threading.Event().wait(every)
        os._exit(1)

    threading.Thread(target=watch, name="dynconv-parent-watch", daemon=True).start()
