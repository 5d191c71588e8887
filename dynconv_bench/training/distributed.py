"""DistributedDataParallel helpers for a training process: the process group from torchrun's environment, its
reductions and barriers, and the DDP wrapper. Starting the N workers is the execution floor's
(execution/processes/ddp_launch.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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
