"""The environment recorded with every result: host, CPU, threads, GPU and driver, versions, git commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform module)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Physical core count (unique core ids per socket in /proc/cpuinfo), None if unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or None


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's git commit and whether the working tree has uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def gpu_info() -> dict[str, Any]:
    """GPU name, count, driver and CUDA/cuDNN versions (None where there is no GPU)."""
    import torch  # here, not at the top: the reports read environment keys without torch

    info: dict[str, Any] = {"gpu": None, "gpu_count": 0, "gpu_memory_bytes": None, "driver": None,
                            "cuda": torch.version.cuda, "cudnn": None}
    if not torch.cuda.is_available():
        return info
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_bytes=props.total_memory,
                cudnn=torch.backends.cudnn.version())
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["driver"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


@lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    import torch

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        **gpu_info(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "fvcore": _version("fvcore"),
        "dynconv_bench": _version("dynconv-bench"),
        **git_commit(),
    }


def collect_environment() -> dict[str, Any]:
    """Everything a result needs to be reproduced and compared (JSON-able); threads as of now."""
    import torch

    env = dict(_static_environment())
    try:
        env["affinity_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        env["affinity_cores"] = None
    env["threads"] = torch.get_num_threads()
    env["interop_threads"] = torch.get_num_interop_threads()
    env["allocator"] = allocator_settings()
    return env


# glibc malloc thresholds fixed for timed workers ("steady"): with them a forward reuses its heap instead of
# mapping and faulting in fresh pages each time, so a process's speed no longer depends on the state its
# allocator drifted into (results/README.md measures both)
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
MALLOC_SETTINGS = ("steady", "inherit")


def malloc_environment(setting: str) -> dict[str, str]:
    """Variables a worker process starts with for the `malloc` setting: 'steady' sets STEADY_MALLOC (over any
    inherited value), 'inherit' adds nothing (the runner's own environment: glibc defaults unless it sets some)."""
    if setting not in MALLOC_SETTINGS:
        raise ValueError(f"unknown malloc setting {setting!r}; valid: {', '.join(MALLOC_SETTINGS)}")
    return dict(STEADY_MALLOC) if setting == "steady" else {}


def allocator_settings() -> str | None:
    """glibc malloc tunables this process started with (`MALLOC_*_`, `GLIBC_TUNABLES`), e.g.
    'MALLOC_MMAP_THRESHOLD_=67108864'; None: the defaults. They change how often a forward faults in fresh pages,
    and so its speed (results/README.md), so rows measured under different settings are separate environments."""
    names = sorted(k for k in os.environ if (k.startswith("MALLOC_") and k.endswith("_")) or k == "GLIBC_TUNABLES")
    return " ".join(f"{k}={os.environ[k]}" for k in names) or None


def ray_placement(task_cpus: float | None = None) -> dict[str, Any]:
    """Where this Ray task runs: node id and IP, its host, the cluster (its head node's host), the GPUs it holds.

    {} outside Ray. `gpu_index` lists the node's physical GPU indices Ray gave the task ([] on CPU).
    """
    try:
        import ray
    except ImportError:
        return {}
    if not ray.is_initialized():
        return {}
    ctx = ray.get_runtime_context()
    out: dict[str, Any] = {"executor": "ray", "node_id": ctx.get_node_id(), "cluster": _cluster_head(),
                           "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname()}
    cpus = _node_cpus(out["node_id"])
    if cpus is not None:
        out["node_cpus"] = cpus
    try:
        out["gpu_index"] = [int(i) if str(i).isdigit() else str(i) for i in ray.get_gpu_ids()]
    except Exception:  # a driver, not a task: it holds no GPU
        out["gpu_index"] = []
    if task_cpus is not None:
        out["task_cpus"] = task_cpus
    return out


@lru_cache(maxsize=8)
def _node_cpus(node_id: str) -> float | None:
    """The CPUs Ray counts on node `node_id`."""
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return float((node.get("Resources") or {}).get("CPU", 0.0))
    return None


@lru_cache(maxsize=1)
def _cluster_head() -> str | None:
    """The host name of the Ray cluster's head node: what names the cluster across restarts."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in (node.get("Resources") or {}):
            return node.get("NodeManagerHostname") or node.get("NodeManagerAddress")
    return None


# What makes two rows comparable in one leaderboard. The git commit is left out: it changes with every
# edit, while the machine and the libraries that do the computing stay.
ENVIRONMENT_KEY = ("host", "cpu_model", "threads", "gpu", "torch", "timm", "allocator")
OPTIONAL_KEY = ("allocator",)  # in the key only where set: rows of the defaults keep the key they always had


def environment_key(env: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The fields of ENVIRONMENT_KEY of a stored environment (None for a field not recorded).

    A row measured on a Ray cluster (`cluster` recorded) is keyed by the cluster's head host instead of its
    own host: the cluster's nodes of one CPU model, GPU type and thread count are one environment, each
    kind of hardware its own (and a local Ray keys as this machine does).
    """
    env = env if isinstance(env, dict) else {}
    host = env.get("cluster") or env.get("host")
    return tuple((k, host if k == "host" else env.get(k)) for k in ENVIRONMENT_KEY
                 if k not in OPTIONAL_KEY or env.get(k) is not None)
