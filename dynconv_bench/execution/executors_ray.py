"""The `ray` executor: cells as Ray tasks, each placed on a node (see dynconv_bench.execution.placement), and
reaching a Ray head without hanging (the address is checked, the head probed within a timeout, one local Ray per
machine). Its factory `make_ray_executor` is registered as an entry point like any executor's (executors.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from ..errors import UserError
from .cell import Cell
from .executors import CellFn, OnStart, default_fn, failed_result, is_cuda, run_guarded
from .processes.limits import MemoryCap
from .store_write import utcnow


class RayExecutor:
    """Cells as Ray tasks; timed cells hold a node (CPU) or a GPU and its CPU share, untimed ones pack.

    See dynconv_bench.execution.placement for what each cell asks for and where it goes. A task that dies
    with its node becomes a failed cell (a rerun measures it again); results come back as tasks finish.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 max_pending: int | None = None, fn: CellFn | None = None, poll_s: float = 2.0,
                 timeout: float | None = None, exit_on_timeout: bool = False) -> None:
        self.address = address
        if address is not None:
            parse_ray_address(address)  # a malformed address (port 99999) is refused now, not after a wait
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_pending = max_pending
        self.fn = fn or default_fn
        self.poll_s = poll_s  # how often the live nodes are read again while waiting
        self.timeout = ray_timeout(timeout)  # how long a head may take to answer (connect)
        self.exit_on_timeout = exit_on_timeout  # the CLI: a ray.init that hangs past it ends the process (exit 2)

    def connect(self) -> Any:
        """Ray, connected: to `address` (or RAY_ADDRESS) once its head answered within the timeout, else to a
        running `ray start` Ray of this machine, else a local Ray started here (one per machine at a time)."""
        try:
            import ray
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'dynconv-bench[ray]'") from None
        if ray.is_initialized():
            return ray
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address is None:  # ray.init() joins the `ray start` Ray this machine recorded, or starts one here
            address = _recorded_ray_address()
            if address is None:
                hold_local_ray_lock()
        hostport = parse_ray_address(address) if address else None
        if hostport is not None:
            probe_ray_head(*hostport, timeout=self.timeout, address=address)
        bounded = hostport is not None and self.exit_on_timeout
        with _stderr_held(bounded) as real_stderr:
            watchdog = None
            if bounded:  # ray.init blocks in native code that no exception reaches: end the process instead
                watchdog = threading.Timer(self.timeout, _die, (real_stderr, f"the Ray head at {address} answered, "
                                           f"but Ray could not connect to it within {self.timeout:g} s"))
                watchdog.daemon = True
                watchdog.start()
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (OSError, ValueError, RuntimeError) as exc:  # ConnectionError, TimeoutError among them
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"cannot connect to the Ray cluster at {address!r}: {first}") from None
            finally:
                if watchdog is not None:
                    watchdog.cancel()
        return ray

    def map(self, cells: Iterable[Cell], plugins: Sequence[str] = (), on_start: OnStart | None = None,
            memory_cap: MemoryCap = None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Yield (cell, result) as tasks finish; a cell whose `on_start` returns False is not submitted."""
        from .placement import Ledger, cell_demand

        ray = self.connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ledger = Ledger(ray.nodes())
        task = ray.remote(max_retries=0)(run_placed)
        queue = list(cells)
        pending: dict[Any, tuple[Cell, Any]] = {}
        while queue or pending:
            for cell in list(queue):
                if self.max_pending and len(pending) >= self.max_pending:
                    break
                demand = cell_demand(cell, self.num_cpus, self.num_gpus)
                why = ledger.impossible(demand)
                if why is not None:
                    queue.remove(cell)
                    if on_start is None or on_start(cell) is not False:
                        yield cell, failed_result(why, utcnow())
                    continue
                placement = ledger.place(demand)
                if placement is None:
                    continue
                queue.remove(cell)
                if on_start is not None and on_start(cell) is False:
                    ledger.release(placement)
                    continue
                options: dict[str, Any] = {"num_cpus": placement.cpus, "num_gpus": placement.gpus}
                if placement.node_id is not None:
                    options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placement.node_id, soft=False)
                threads = max(1, int(placement.cpus)) if placement.node_id is not None else None
                ref = task.options(**options).remote(self.fn, cell.to_dict(), list(plugins), memory_cap,
                                                     is_cuda(cell), threads, placement.node_cpus)
                pending[ref] = (cell, placement)
            if not pending:
                if queue:  # every node that could hold them is gone or busy elsewhere: read the nodes again
                    time.sleep(min(self.poll_s, 0.5))
                    ledger.update(ray.nodes())
                continue
            done, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
            if not done:
                ledger.update(ray.nodes())
                continue
            for ref in done:
                cell, placement = pending.pop(ref)
                ledger.release(placement)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker or its node died: failed, and a rerun measures it again
                    if isinstance(exc, (ray.exceptions.NodeDiedError, ray.exceptions.TaskUnschedulableError)):
                        ledger.forget(placement.node_id or "")
                    ledger.update(ray.nodes())
                    node = placement.node_id or "?"
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    result = {**failed_result(f"ray task failed on node {node[:12]}: {type(exc).__name__}: {first}",
                                        utcnow()), "environment": {"executor": "ray", "node_id": placement.node_id}}
                yield cell, result


def run_placed(fn: CellFn, cell: dict[str, Any], plugins: Sequence[str] = (), memory_cap: MemoryCap = None,
               cuda: bool = False, threads: int | None = None, node_cpus: float = 0.0) -> dict[str, Any]:
    """A Ray task: `run_guarded` with `threads` torch threads; the row names its node, its span to the ms."""
    from ..metrics.env import ray_placement
    from .processes.ddp_launch import EXECUTOR_ENV

    started = utcnow_ms()
    os.environ[EXECUTOR_ENV] = "ray"  # a DDP cell here launches its workers through Ray Train
    with task_threads(threads):
        result = run_guarded(fn, cell, plugins, memory_cap, cuda)
    env = {**(result.get("environment") or {}), **ray_placement(task_cpus=threads)}
    node_cpus = node_cpus or env.get("node_cpus") or 0
    if node_cpus:  # every row of a node names the same default: what a cell holding the whole node runs with
        env["threads"] = max(1, int(node_cpus))
    return {**result, "environment": env, "started": started, "finished": utcnow_ms()}


@contextlib.contextmanager
def task_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads, and OMP/MKL's for subprocesses, set to `threads` for the block (None: as is)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    env_before = {k: os.environ.get(k) for k in _THREAD_VARS}
    torch.set_num_threads(threads)
    os.environ.update({k: str(threads) for k in _THREAD_VARS})
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def utcnow_ms() -> str:
    """UTC now in ISO format to the millisecond: a Ray row's span, precise enough to check that spans overlap."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def make_ray_executor(address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                      max_pending: int | None = None, fn: CellFn | None = None, poll_s: float = 2.0,
                      ray_timeout: float | None = None, exit_on_timeout: bool = False) -> RayExecutor:
    """The `ray` executor's factory (its entry point): `ray_timeout` is how long a head may take to answer."""
    return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus, max_pending=max_pending, fn=fn,
                       poll_s=poll_s, timeout=ray_timeout, exit_on_timeout=exit_on_timeout)


# -- reaching a Ray head without hanging -------------------------------------------------------------
RAY_TIMEOUT_ENV = "DYNCONV_RAY_TIMEOUT"
DEFAULT_RAY_TIMEOUT_S = 30.0
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def ray_timeout(value: float | None = None) -> float:
    """Seconds a Ray head may take to answer: `value`, else $DYNCONV_RAY_TIMEOUT, else 30."""
    if value is None:
        text = os.environ.get(RAY_TIMEOUT_ENV, "").strip()
        if not text:
            return DEFAULT_RAY_TIMEOUT_S
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{RAY_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not (0 < value <= 3600):
        raise UserError(f"the Ray connect timeout must be in (0, 3600] s, not {value:g}")
    return float(value)


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (HOST:PORT, [IPv6]:PORT, ray://HOST:PORT); None for `auto` and `local`."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    rest = text[len("ray://"):] if text.startswith("ray://") else text
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9._-]+):(\d{1,5})", rest)
    port = int(m.group(2) or m.group(4)) if m else 0
    if m is None or not 1 <= port <= 65535:
        raise UserError(f"Ray address {address!r} is not HOST:PORT with a port in 1..65535 (the head's address "
                        "as `ray start --head` prints it, e.g. 10.0.0.5:6379), nor auto or local")
    return m.group(1) or m.group(3), port


def probe_ray_head(host: str, port: int, timeout: float, address: str | None = None) -> None:
    """Check within `timeout` s that HOST:PORT accepts a connection and speaks gRPC (HTTP/2), as a Ray head's GCS
    does; a UserError of one line otherwise. ray.init itself would wait on a silent address for minutes."""
    where = address or f"{host}:{port}"
    hint = f"(--ray-timeout or ${RAY_TIMEOUT_ENV}; the head: `ray start --head --port={port}`)"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve the Ray head's host {host!r} ({where}): {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise UserError(f"no Ray head at {where}: connection refused {hint}") from None
    except TimeoutError:  # socket.timeout too
        raise UserError(f"the Ray head at {where} did not answer within {timeout:g} s {hint}") from None
    except OSError as exc:
        raise UserError(f"cannot reach the Ray head at {where}: {exc.strerror or exc} {hint}") from None
    if len(head) < 9 or head[3] != 0x4:  # a gRPC server opens with a SETTINGS frame
        raise UserError(f"{where} answered, but not as a Ray head (no gRPC): is {port} the head's GCS port "
                        "(6379 unless `ray start --head --port` said otherwise)?")


def _die(fd: int, message: str) -> None:
    """The watchdog of a hung ray.init (CLI only): one line on the real stderr, exit 2, no native stack."""
    os.write(fd, f"dynconv-bench: error: {message}\n".encode(errors="replace"))
    os._exit(2)


@contextlib.contextmanager
def _stderr_held(enabled: bool) -> Iterator[int]:
    """While ray.init runs (CLI only): what Ray and its native code write to stderr is held back, and written
    out only when ray.init returns, so that a failure is the one line of the error. Yields the real stderr."""
    if not enabled:
        yield 2
        return
    sys.stderr.flush()
    real = os.dup(2)
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    ok = False
    try:
        yield real
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        os.close(real)
        if ok:
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            sys.stderr.flush()
        held.close()


# -- one local Ray per machine ------------------------------------------------------------------------
_LOCAL_LOCK: list[int] = []  # the open lock file of this process's local Ray, held until it exits


def local_ray_lock_path() -> str:
    """The file a run that starts its own local Ray locks (one per machine)."""
    return os.path.join(tempfile.gettempdir(), "dynconv-bench-local-ray.lock")


def _recorded_ray_address() -> str | None:
    """The address of the `ray start` Ray this machine recorded (ray.init() without an address joins it), or None:
    ray.init() would start a Ray here."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None)
    except Exception:  # a private helper that moved: ray.init() decides, as a local start
        return None


def hold_local_ray_lock() -> None:
    """Take this machine's local-Ray lock for the life of this process, or refuse at once (a UserError).

    Two runs that each start a local Ray would each think the machine is theirs: their timed cells would run
    side by side. The second one is refused with what to do instead.
    """
    if _LOCAL_LOCK:
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): nothing to hold
        return
    path = local_ray_lock_path()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return  # a lock file another user owns and we cannot open: Ray's own start is the judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"another run (pid {holder}) has started a local Ray on this machine, and the timed cells of "
                        "two Ray clusters are not kept apart: wait for it, or start one Ray (`ray start --head`) that "
                        "both runs join (docs/cluster.md)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _LOCAL_LOCK.append(fd)
