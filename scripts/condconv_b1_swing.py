"""Reproduce the CondConv ResNet-18 batch-1 swing: the same speed cell timed in fresh processes after different
prior work (nothing; a MACs profile; a params count; a large allocation; the thread count changed), under
different process settings (glibc malloc thresholds, OpenMP wait policy), after the machine sat idle (DAMON
pages library code out), beside a neighbour on the other core (streaming memory, or computing in its caches),
and with address-space randomisation on and off (the memory layout of each process).

Each scenario runs in its own fresh interpreter and prints one line: CondConv's and static's median wall ms per
forward, process CPU ms per forward, and the interleaved ratio (static time / CondConv time; above 1: faster).

    flock /tmp/dynconv-cpu.lock python scripts/condconv_b1_swing.py                # every scenario once
    python scripts/condconv_b1_swing.py fresh after-macs                            # some of them
    python scripts/condconv_b1_swing.py fresh fresh-aslr-off --repeat 6             # each 6 times
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from dynconv_bench.metrics.env import STEADY_MALLOC

CIFAR_B16 = {"SWING_BACKBONE": "cifar_resnet20", "SWING_BATCH": "16", "DYNCONV_BENCH_STRATEGY": "grouped"}
SCENARIOS = {  # name: (prior work, extra environment)
    "fresh": ("none", {}),
    "after-macs": ("macs", {}),
    "after-params": ("params", {}),
    "after-big-alloc": ("alloc", {}),
    "after-cifar-speed": ("cifar-speed", {}),  # what the `--only speed` run did before this cell
    "after-cifar-speed-mmap-threshold-fixed": ("cifar-speed", {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}),
    "threads-1-then-2": ("threads", {}),
    "fresh-memory-guard": ("none", {"SWING_GUARD": "1"}),  # the runner's memory cap watcher thread (10 ms)
    "after-macs-memory-guard": ("macs", {"SWING_GUARD": "1"}),
    "fresh-mmap-threshold-fixed": ("none", {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}),
    "after-macs-mmap-threshold-fixed": ("macs", {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}),
    "fresh-big-mmap-threshold": ("none", STEADY_MALLOC),  # the speed workers' `malloc = "steady"`
    "fresh-omp-passive": ("none", {"OMP_WAIT_POLICY": "PASSIVE"}),
    # torch's shared libraries dropped from the page cache first, as the VM's DAMON pageout scheme does to
    # file pages idle for 60 s (see results/README.md): every first use of a kernel's code waits for the disk
    "fresh-cold-libraries": ("none", {"SWING_COLD": "1"}),
    # what the swinging run did: start 2.5 minutes after the machine's last work. The script itself sleeps
    # (nothing else may run), long past DAMON's 60 s idle limit, then starts the fresh process
    "after-idle-200s": ("none", {"SWING_IDLE": "200"}),
    # a neighbour on the other core (as another VM on the host, or any process): the cell runs on core 0 with
    # 1 thread; the neighbour on core 1 either streams memory (copies 256 MiB arrays) or computes in its caches
    "core0-alone": ("none", {"SWING_CORE0": "1"}),
    "core0-compute-neighbour": ("none", {"SWING_CORE0": "1", "SWING_NEIGHBOUR": "compute"}),
    "core0-memory-neighbour": ("none", {"SWING_CORE0": "1", "SWING_NEIGHBOUR": "memory"}),
    # the memory layout: the same fresh process with address-space randomisation on (every process places its
    # buffers elsewhere) and off (`setarch -R`: every process gets the same addresses); run them with --repeat
    "fresh-aslr-off": ("none", {"SWING_ASLR_OFF": "1"}),
    # the same at batch 16 on cifar_resnet20, the per-sample strategy forced to 'grouped' (no tuning to differ)
    "b16-cifar": ("none", CIFAR_B16),
    "b16-cifar-aslr-off": ("none", {**CIFAR_B16, "SWING_ASLR_OFF": "1"}),
    "b16-cifar-big-mmap-threshold": ("none", {**CIFAR_B16, **STEADY_MALLOC}),
    "b16-cifar-1-thread": ("none", {**CIFAR_B16, "SWING_THREADS": "1"}),
}


def neighbour(kind: str) -> None:
    """Run forever on core 1: stream memory (a bandwidth hog) or compute inside the L1/L2 caches."""
    import numpy as np

    os.sched_setaffinity(0, {1})
    if kind == "memory":
        a, b = np.ones(2**25), np.empty(2**25)  # 2 x 256 MiB of float64: every copy goes to DRAM and back
        while True:
            np.copyto(b, a)
    x = np.ones(2**12)  # 32 KiB: stays in L1/L2
    while True:
        for _ in range(1000):
            np.multiply(x, 1.0000001, out=x)


def _vmstat(*keys: str) -> dict[str, int]:
    rows = dict(line.split() for line in open("/proc/vmstat"))
    return {k: int(rows.get(k, 0)) for k in keys}


def _drop_torch_libraries() -> int:
    """Drop torch's shared libraries from the page cache (pages no process has mapped); returns their bytes."""
    import glob
    import importlib.util

    lib = os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib")
    total = 0
    for path in glob.glob(os.path.join(lib, "*.so*")):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def _prior(work: str) -> None:
    import torch

    from dynconv_bench.models.modelspec import ModelSpec

    if work == "macs":
        from dynconv_bench.metrics.flops import profile

        for variant in ("static", "condconv"):
            profile(ModelSpec("resnet18", variant, {}).build(1000).eval(), input_size=(3, 224, 224))
    elif work == "params":
        from dynconv_bench.metrics.params import count_params

        for variant in ("static", "condconv"):
            count_params(ModelSpec("resnet18", variant, {}).build(1000))
    elif work == "alloc":
        x = torch.empty(256 * 2**20, dtype=torch.uint8)  # 256 MiB: raises glibc's dynamic mmap threshold on free
        x.fill_(1)
        del x
    elif work == "cifar-speed":  # the cpu suite's speed cells on cifar_resnet20, in this process, as the runner did
        from dynconv_bench.execution.cells import run_cell
        from dynconv_bench.execution.suite import load_suite

        cells = [c for c in load_suite("suites/cpu.toml").cells()
                 if c.kind == "speed" and c.backbone == "cifar_resnet20" and c.options["mode"] == "inference"]
        for c in cells:
            c.options.update(processes=0, min_time=0.2)
            run_cell(c)
    elif work == "threads":
        torch.set_num_threads(1)
        torch.randn(64, 64) @ torch.randn(64, 64)
        torch.set_num_threads(2)


def worker(name: str) -> None:
    import resource

    import torch

    from dynconv_bench.metrics.speed import measure_paired
    from dynconv_bench.models.convert import deploy
    from dynconv_bench.models.modelspec import ModelSpec

    work, _ = SCENARIOS[name]
    threads = int(os.environ.get("SWING_THREADS", "2"))
    if os.environ.get("SWING_CORE0"):
        os.sched_setaffinity(0, {0})
        threads = 1
    _prior(work)
    backbone, batch = os.environ.get("SWING_BACKBONE", "resnet18"), int(os.environ.get("SWING_BATCH", "1"))
    size, classes = ((3, 32, 32), 10) if backbone.startswith("cifar") else ((3, 224, 224), 1000)
    variant = os.environ.get("SWING_VARIANT", "condconv")
    models = [deploy(ModelSpec(backbone, v, {}).build(classes)) for v in (variant, "static")]
    import contextlib

    from dynconv_bench.metrics.limits import MemoryGuard, default_memory_cap

    vm0 = _vmstat("workingset_refault_file", "pgmajfault")
    guard = MemoryGuard(default_memory_cap()) if os.environ.get("SWING_GUARD") else contextlib.nullcontext()
    with guard:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        result = measure_paired(*models, "inference", batch, size, rounds=4, threads=threads, warmup=2,
                                min_time=2.0, min_runs=3)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    vm1 = _vmstat("workingset_refault_file", "pgmajfault")
    print(json.dumps({"own_ms": round(result.median_s * 1e3, 1), "own_cpu_ms": round(result.cpu_s * 1e3, 1),
                      "static_ms": round(result.baseline_median_s * 1e3, 1),
                      "static_cpu_ms": round(result.baseline_cpu_s * 1e3, 1), "ratio": round(result.baseline_ratio, 3),
                      "faults_per_run": round((cpu1.ru_minflt - cpu0.ru_minflt) / (result.runs * 2), 1),
                      "sys_share": round((cpu1.ru_stime - cpu0.ru_stime) / max(1e-9, (cpu1.ru_utime - cpu0.ru_utime)
                                                                             + (cpu1.ru_stime - cpu0.ru_stime)), 3),
                      "major_faults": cpu1.ru_majflt - cpu0.ru_majflt, "start_major_faults": cpu0.ru_majflt,
                      "machine_file_refaults": vm1["workingset_refault_file"] - vm0["workingset_refault_file"],
                      "vol_ctx_switches": cpu1.ru_nvcsw - cpu0.ru_nvcsw, "threads": torch.get_num_threads()}))


def main(names: list[str]) -> None:
    repeat = 1
    if "--repeat" in names:
        at = names.index("--repeat")
        repeat, names = int(names[at + 1]), names[:at] + names[at + 2:]
    for name in [n for n in names or list(SCENARIOS) for _ in range(repeat)]:
        env = {**os.environ, **SCENARIOS[name][1]}
        if env.get("SWING_COLD"):
            print(f"dropped {_drop_torch_libraries() / 2**20:.0f} MiB of torch libraries from the page cache")
        env.pop("OMP_NUM_THREADS", None)
        if env.get("SWING_IDLE"):
            vm0 = _vmstat("workingset_refault_file", "pgmajfault")
            time.sleep(float(env["SWING_IDLE"]))
            vm1 = _vmstat("workingset_refault_file", "pgmajfault")
            print(f"idle {env['SWING_IDLE']} s: the machine refaulted {vm1['workingset_refault_file'] - vm0['workingset_refault_file']}"
                  f" file pages meanwhile", flush=True)
        hog = (subprocess.Popen([sys.executable, __file__, "--neighbour", env["SWING_NEIGHBOUR"]])
               if env.get("SWING_NEIGHBOUR") else None)
        t0 = time.perf_counter()
        try:
            aslr_off = ["setarch", os.uname().machine, "-R"] if env.get("SWING_ASLR_OFF") else []
            out = subprocess.run([*aslr_off, sys.executable, __file__, "--worker", name], env=env,
                                 capture_output=True, text=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        line = (out.stdout.strip().splitlines() or [out.stderr.strip()[-300:]])[-1]
        print(f"{name:34s} {time.perf_counter() - t0:5.1f} s  {line}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    elif sys.argv[1:2] == ["--neighbour"]:
        neighbour(sys.argv[2])
    else:
        main(sys.argv[1:])
