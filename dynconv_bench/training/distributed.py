"""DistributedDataParallel helpers: process-group setup from torchrun's environment, reductions, and `launch`:
one function run by N DDP workers, through torchrun on this machine or Ray Train's TorchTrainer on a Ray cluster.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError

EXECUTOR_ENV = "DYNCONV_EXECUTOR"  # "ray" inside a cell's Ray task: `launch` then goes through Ray Train


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank, its device and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment variables of torchrun (WORLD_SIZE > 1, RANK) are set."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def resolve_device(device: str = "auto", local_rank: int = 0) -> str:
    """"auto" -> cuda:<local_rank> when CUDA is available, else cpu; "cuda" gets the local rank too."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (nccl on GPU, gloo on CPU); single process otherwise."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return current(dev)
    if not launched_by_torchrun():
        return DistInfo(device=dev)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if dev.startswith("cuda"):
        torch.cuda.set_device(torch.device(dev))
    dist.init_process_group(backend=backend)
    return current(dev)


def current(device: str = "cpu") -> DistInfo:
    """The DistInfo of an already initialised process group (or of a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo(device=device)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), device,
                    dist.get_backend())


def cleanup() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks (a copy on the rank's device; identity for one process)."""
    if not info.distributed:
        return values
    out = values.detach().clone().to(info.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if `flag` is true on any rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank before evaluating."""
    if info.distributed:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around `model` when several processes train it."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


# -- launching N workers ------------------------------------------------------------------------------
# Each rank runs: import the target, call it with the payload, rank 0 writes what it returned.
_RANK_BOOT = ("import sys\n"
              "from dynconv_bench.training.distributed import _rank_main\n"
              "_rank_main(sys.argv[1], sys.argv[2])\n")


def launch(target: str, payload: Any, workers: int, nodes: int = 1, device: str = "cpu",
           cpus_per_worker: float = 1, launcher: str | None = None) -> dict[str, Any]:
    """Call `target` ("module:function", taking `payload`) in `workers` DDP processes; rank 0's dict comes back.

    `launcher`: "torchrun" (this machine, `--standalone`) or "ray" (Ray Train's TorchTrainer, workers across
    `nodes` nodes); default: "ray" inside a cell's Ray task, else "torchrun". The target joins the process group
    with `init_distributed` (gloo on CPU, nccl on CUDA). The dict gains `launcher` and `nodes` (nodes spanned).
    """
    launcher = launcher or ("ray" if os.environ.get(EXECUTOR_ENV) == "ray" else "torchrun")
    if launcher == "ray":
        return _launch_ray_train(target, payload, workers, nodes, device, cpus_per_worker)
    if nodes > 1:
        raise UserError(f"nodes = {nodes}: torchrun from one process reaches this machine only; run the suite "
                        "with --executor ray (Ray Train spreads the workers over the cluster's nodes)")
    return _launch_torchrun(target, payload, workers, cpus_per_worker)


def _target(target: str) -> Callable[[Any], dict[str, Any]]:
    module, _, name = target.partition(":")
    fn: Any = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


def _launch_torchrun(target: str, payload: Any, workers: int, cpus_per_worker: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dynconv_ddp_") as tmp:
        given, out = Path(tmp) / "payload.pkl", Path(tmp) / "rank0.pkl"
        given.write_bytes(pickle.dumps((target, payload)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
               "--no-python", sys.executable, "-c", _RANK_BOOT, str(given), str(out)]
        threads = str(max(1, int(cpus_per_worker)))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
            return {"status": "failed", "error": f"torchrun with {workers} workers exited {proc.returncode}: "
                                                 + " | ".join(tail)[-1500:]}
        result = pickle.loads(out.read_bytes())
    return {**result, "launcher": "torchrun", "nodes": 1}


def _rank_main(given: str, out: str) -> None:
    """A torchrun rank: join the group, call the target, rank 0 writes its result (atomically)."""
    target, payload = pickle.loads(Path(given).read_bytes())
    result = _target(target)(payload)
    if int(os.environ.get("RANK", "0")) == 0:
        tmp = Path(out + ".part")
        tmp.write_bytes(pickle.dumps(result))
        tmp.replace(out)
    cleanup()


def _launch_ray_train(target: str, payload: Any, workers: int, nodes: int, device: str,
                      cpus_per_worker: float) -> dict[str, Any]:
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as exc:
        raise UserError(f"DDP cells on the ray executor need Ray Train: pip install 'ray[train]' ({exc})") from None
    cuda = device.startswith("cuda")
    strategy = "STRICT_PACK" if nodes == 1 else "STRICT_SPREAD" if nodes == workers else "PACK"
    resources = {"CPU": float(cpus_per_worker), **({"GPU": 1.0} if cuda else {})}
    import ray

    mailbox = ray.remote(num_cpus=0)(_Mailbox).remote()  # rank 0's result comes back through it, from any node
    with tempfile.TemporaryDirectory(prefix="dynconv_ray_train_") as tmp:
        trainer = TorchTrainer(
            _ray_train_loop, train_loop_config={"target": target, "payload": payload, "mailbox": mailbox},
            torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=cuda, resources_per_worker=resources,
                                         placement_strategy=strategy),
            run_config=RunConfig(name=f"dynconv-{uuid.uuid4().hex[:8]}", storage_path=tmp))
        try:
            trainer.fit()
            result, nodes = ray.get(mailbox.get.remote())
        except Exception as exc:  # a worker failed: the cell fails with its reason
            text = str(exc).strip().splitlines()
            return {"status": "failed", "error": f"Ray Train with {workers} workers failed: "
                                                 f"{type(exc).__name__}: {text[0] if text else ''}"[:1500]}
        finally:
            ray.kill(mailbox)
    return {**result, "launcher": "ray-train", "nodes": nodes}


class _Mailbox:
    """A Ray actor holding rank 0's result for the process that launched the workers."""

    def __init__(self) -> None:
        self.value: Any = None

    def put(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        if self.value is None:
            raise RuntimeError("rank 0 reported no result")
        return self.value


def _ray_train_loop(config: dict[str, Any]) -> None:
    """A Ray Train worker (its process group already joined): call the target; rank 0 posts its result."""
    import ray

    result = _target(config["target"])(config["payload"])
    info = current()
    node = ray.get_runtime_context().get_node_id()
    nodes: list[Any] = [node] * info.world_size
    if info.distributed:
        dist.all_gather_object(nodes, node)
    if info.is_main:
        ray.get(config["mailbox"].put.remote((result, len(set(nodes)))))
