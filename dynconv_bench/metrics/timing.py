"""Timing one model: wall and process CPU time of inference forwards and training steps on CPU and CUDA, in
this process; failures become results. Round-robin timing with a baseline is `paired_timing`, the result type
and the summary of several processes `timing_result`.

Public surface: `build_step`, `time_runs`, `summarise`, `measure_inference`, `measure_train_step`,
`check_cuda_graph`, `capture_cuda_graph`, `machine_load`, `process_usage`, `record_usage`, `fixed_threads`,
`cudnn_benchmark`, `resolve_device`, `amp_dtype`.

CPU: the thread count is fixed with `torch.set_num_threads` (and restored afterwards), warm-up runs,
then `time.perf_counter` and `time.process_time` around each run until both `min_time` seconds and `min_runs`
runs are done (or exactly `runs` runs: the calibration a first worker process hands to the next ones).
CUDA: `cudnn.benchmark`, CUDA events around each run (synchronised), optional channels_last, AMP
(fp16/bf16) and `torch.compile`; peak memory from the CUDA caching allocator. `cuda_graph=True` (inference):
the warm-up runs eagerly on a side stream, then one forward is captured in a CUDA graph and its replays are
timed (the GPU work alone, without Python and kernel-launch overhead). `strategies` counts the per-sample conv
layers by the execution strategy they ran with (see `dynconv_bench.models.per_sample_conv`).
One run = one forward of a batch (inference) or one forward+backward+SGD step (training).
The caller's model is never modified: training steps, channels_last and moves to another device work on a
deep copy; inference on the model's own device uses the model itself (its train/eval mode is restored).
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.per_sample_conv import record_strategies
from .env import allocator_settings
from .timing_result import SpeedResult

AMP_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
DEFAULT_WARMUP = {"cpu": 3, "cuda": 20}
DEFAULT_MIN_TIME = {"cpu": 1.0, "cuda": 1.0}
GRAPH_WARMUP_REPLAYS = 3


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device from 'cpu', 'cuda' or 'cuda:N' (UserError for anything else)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}; valid: cpu, cuda, cuda:N")
    return dev


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """The autocast dtype for an `amp` setting (None, 'fp16' or 'bf16')."""
    if amp in (None, "", "none", "fp32", False):
        return None
    if amp not in AMP_DTYPES:
        raise UserError(f"unknown amp {amp!r}; valid: none, fp16, bf16")
    return AMP_DTYPES[amp]


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count for the block and restore it afterwards."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Set `torch.backends.cudnn.benchmark` for the block and restore it afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def process_usage() -> tuple[int, int, float, float] | None:
    """This process's minor and major page faults and user and system CPU seconds so far (None: not POSIX)."""
    try:
        import resource
    except ImportError:
        return None
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_minflt, u.ru_majflt, u.ru_utime, u.ru_stime


def record_usage(result: SpeedResult, start: tuple[int, int, float, float] | None, runs: int) -> None:
    """Store the malloc tunables, the page faults and the kernel's share of CPU time since `start` over `runs`
    timed runs: a forward that faults in fresh pages (the allocator handed memory back) spends its time in the
    kernel, not in the model."""
    result.allocator = allocator_settings()  # the malloc tunables this process really ran under
    now = process_usage()
    if start is None or now is None:
        return
    minor, major, user, system = (b - a for a, b in zip(start, now))
    result.major_faults = major
    result.minor_faults_per_run = round(minor / max(1, runs), 1)
    result.system_share = round(system / (user + system), 4) if user + system > 0 else None


def time_runs(step: Callable[[], Any], device: torch.device, warmup: int, min_time: float,
              min_runs: int = 5, max_runs: int = 100_000, cpu_times: list[float] | None = None) -> list[float]:
    """Per-run seconds of `step` after `warmup` runs, repeated until `min_time` and `min_runs` are reached.

    `cpu_times`, when given, receives each run's process CPU seconds (every thread of this process).
    """
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    times: list[float] = []
    total = 0.0
    while (total < min_time or len(times) < min_runs) and len(times) < max_runs:
        c0 = time.process_time()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            dt = start.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
        times.append(dt)
        total += dt
    return times


def summarise(result: SpeedResult, times: list[float], cpu_times: list[float] | None = None) -> SpeedResult:
    """Fill `result`'s statistics (median, IQR, min, max, mean, throughput, latency, CPU per run) from runs."""
    q1, q3 = np.percentile(times, [25, 75])
    med = statistics.median(times)
    result.times_s = times
    result.runs = len(times)
    result.median_s, result.iqr_s = med, float(q3 - q1)
    result.min_s, result.max_s, result.mean_s = min(times), max(times), statistics.fmean(times)
    result.throughput = result.batch_size / med if med > 0 else None
    result.latency_ms = med * 1000.0
    if cpu_times:
        result.cpu_s = statistics.median(cpu_times)
    return result


def error_text(exc: BaseException) -> str:
    """The text of a failed result: the exception's type and message, at most about 2000 characters."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


def check_cuda_graph(mode: str, device: str | torch.device, compile: bool, interleave: int = 0) -> None:
    """UserError unless a CUDA graph can time this: inference alone (not `interleave`d with a baseline) on a CUDA
    device, without torch.compile. The one rule for `cuda_graph`, of the speed kind and of this harness alike."""
    if interleave:
        raise UserError("speed: interleave and cuda_graph cannot be combined yet; time graphs alone")
    dev = resolve_device(device)
    if dev.type != "cuda":
        raise UserError(f"cuda_graph needs device 'cuda' (CUDA graphs replay GPU work only), got {str(dev)!r}")
    if mode != "inference":
        raise UserError("cuda_graph times inference only; use mode 'inference' or cuda_graph = false")
    if compile:
        raise UserError("cuda_graph and compile together are not supported; set one of them")


def _measure(mode: str, model: nn.Module, batch_size: int, input_size: tuple[int, ...], device: str,
             threads: int | None, warmup: int | None, min_time: float | None, min_runs: int, max_runs: int,
             channels_last: bool, amp: str | None, compile: bool, num_classes: int | None, lr: float,
             cuda_graph: bool = False) -> SpeedResult:
    dev = resolve_device(device)
    dtype = amp_dtype(amp)
    if cuda_graph:
        check_cuda_graph(mode, dev, compile)
    warmup = DEFAULT_WARMUP[dev.type] if warmup is None else warmup
    min_time = DEFAULT_MIN_TIME[dev.type] if min_time is None else min_time
    result = SpeedResult("failed", None, mode, batch_size, list(input_size), str(dev), None, warmup=warmup,
                         min_time=min_time, channels_last=channels_last, amp=amp if dtype else None,
                         compile=compile, cuda_graph=cuda_graph)
    if dev.type == "cuda" and not torch.cuda.is_available():
        result.error = "CUDA requested but torch.cuda.is_available() is False (no GPU or no CUDA driver)"
        return result
    was_training = model.training
    with fixed_threads(threads) as n_threads, cudnn_benchmark(dev.type == "cuda"):
        result.threads = n_threads
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            step = build_step(mode, model, batch_size, input_size, dev, channels_last, dtype, compile,
                              num_classes, lr)
            usage = process_usage()
            with record_strategies() as used:
                cpu: list[float] = []
                if cuda_graph:  # Python runs in the warm-up and the capture only
                    step, steps = capture_cuda_graph(step, dev, warmup), warmup + 1
                    times = time_runs(step, dev, GRAPH_WARMUP_REPLAYS, min_time, min_runs, max_runs, cpu)
                else:
                    times = time_runs(step, dev, warmup, min_time, min_runs, max_runs, cpu)
                    steps = warmup + len(times)
            record_usage(result, usage, warmup + len(times))
            result.strategies = {k: n // steps for k, n in sorted(used.items())}
            result.strategy_plan = dict(sorted(used.plan.items()))
            result.strategy_failures = list(used.failures)
            summarise(result, times, cpu)
            result.status = "ok"
            if dev.type == "cuda":
                result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(dev))
        except Exception as exc:  # OOM, compile failure, unsupported op: a failed result, the caller goes on
            result.status, result.error = "failed", error_text(exc)
        finally:
            step = None  # noqa: F841 - drop the model copy before emptying the cache
            model.train(was_training)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return result


def capture_cuda_graph(step: Callable[[], Any], dev: torch.device, warmup: int) -> Callable[[], Any]:
    """Run `step` `warmup` times on a side stream, capture one call in a CUDA graph; returns its replay.

    The replay returns the captured call's output tensors, refreshed in place by every replay.
    """
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # eager warm-up off the default stream, as PyTorch's CUDA graph notes advise
        for _ in range(max(warmup, 1)):
            step()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()

    def replay() -> Any:
        graph.replay()
        return out
    return replay


def _on_device(model: nn.Module, dev: torch.device) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.device.type == dev.type and (dev.index is None or t.device.index == dev.index) for t in tensors)


def build_step(mode: str, model: nn.Module, batch_size: int, input_size: tuple[int, ...], dev: torch.device,
                channels_last: bool, dtype: torch.dtype | None, compile: bool, num_classes: int | None,
                lr: float) -> Callable[[], Any]:
    """A no-argument callable that runs one inference forward or one training step of `model` on a random batch."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if mode == "inference" and not channels_last and _on_device(model, dev):
        net = model  # no copy needed (eval mode is restored by the caller); keeps GPU memory honest
    else:
        net = copy.deepcopy(model).to(dev, memory_format=fmt)
    x = torch.randn(batch_size, *input_size, device=dev).contiguous(memory_format=fmt)
    run = torch.compile(net) if compile else net
    autocast = (lambda: torch.autocast(dev.type, dtype=dtype)) if dtype else contextlib.nullcontext
    if mode == "inference":
        net.eval()

        def infer() -> Any:
            with torch.inference_mode(), autocast():
                return run(x)
        return infer

    net.train()
    if num_classes is None:
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int) or num_classes < 1:
            with torch.no_grad():
                num_classes = int(net.eval()(x[:1]).shape[-1])
            net.train()
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16 and dev.type == "cuda")

    def train_step() -> Any:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(run(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss
    return train_step


def measure_inference(model: nn.Module, batch_size: int, input_size: tuple[int, ...] = (3, 224, 224),
                      device: str = "cpu", threads: int | None = None, warmup: int | None = None,
                      min_time: float | None = None, channels_last: bool = False, amp: str | None = None,
                      compile: bool = False, min_runs: int = 5, max_runs: int = 100_000,
                      cuda_graph: bool = False) -> SpeedResult:
    """Time forward passes of a batch (eval mode, inference_mode); failures become a failed result.

    `cuda_graph=True` times replays of a captured CUDA graph (CUDA only: UserError on another device).
    """
    return _measure("inference", model, batch_size, input_size, device, threads, warmup, min_time, min_runs,
                    max_runs, channels_last, amp, compile, None, 0.0, cuda_graph)


def measure_train_step(model: nn.Module, batch_size: int, input_size: tuple[int, ...] = (3, 224, 224),
                       num_classes: int | None = None, device: str = "cpu", threads: int | None = None,
                       warmup: int | None = None, min_time: float | None = None, channels_last: bool = False,
                       amp: str | None = None, compile: bool = False, min_runs: int = 5,
                       max_runs: int = 100_000, lr: float = 0.01) -> SpeedResult:
    """Time training steps (forward, cross-entropy, backward, SGD with momentum) on random labels."""
    return _measure("train", model, batch_size, input_size, device, threads, warmup, min_time, min_runs,
                    max_runs, channels_last, amp, compile, num_classes, lr)


def machine_load() -> dict[str, float | int | None]:
    """1-minute load average, core count and current CPU clock (MHz, mean over cores) where readable."""
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    mhz = None
    try:
        values = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.lower().startswith("cpu mhz")]
        mhz = round(statistics.fmean(values), 1) if values else None
    except (OSError, ValueError, IndexError):
        pass
    return {"load_avg": load, "cores": os.cpu_count(), "cpu_mhz": mhz}
