"""Catch host synchronisations in a forward: what keeps a model out of a CUDA graph, found on any device.

A CUDA graph replays GPU work only: a forward that reads a tensor's value on the host (`.item()`, `if t:`,
`.tolist()`), copies to or from the host, or makes a shape that depends on values (`nonzero`, boolean
masks) cannot be captured. `forbid_host_sync()` raises at the first such call, so a CPU run finds them.

A test helper (tests/test_host_sync.py runs every built-in variant under it), not part of the package: the
product never runs it, since a capture on the GPU fails by itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# A tensor's value read on the host, a copy to the host, or an output whose shape depends on values.
HOST_SYNC_OPS = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "__complex__",
    "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
})
# Tensors made from host data inside a forward: a host-to-device copy on CUDA, which capture rejects.
HOST_COPY_OPS = frozenset({"tensor", "as_tensor", "from_numpy"})


class HostSyncError(RuntimeError):
    """A forward did something that needs the host to wait for the device (or copies host data in)."""


class forbid_host_sync(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch's modes
    """Raise HostSyncError at the first host synchronisation or host-data tensor inside the block."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        why = _sync_reason(name, args, kwargs)
        if why is not None:
            raise HostSyncError(f"{why}: a forward that runs in a CUDA graph must not do this")
        return func(*args, **kwargs)


def _sync_reason(name: str, args: tuple, kwargs: dict[str, Any]) -> str | None:
    if name in HOST_SYNC_OPS:
        return f"Tensor.{name} reads a value on the host" if name.startswith("__") or name in (
            "item", "tolist", "numpy", "cpu") else f"{name} has a value-dependent output shape"
    if name in HOST_COPY_OPS:
        return f"torch.{name} makes a tensor from host data (a host-to-device copy on CUDA)"
    if name in ("__getitem__", "__setitem__") and len(args) > 1 and _has_bool_tensor(args[1]):
        return f"Tensor.{name} with a boolean mask (a nonzero on the host)"
    if name == "repeat_interleave" and kwargs.get("output_size") is None and any(
            isinstance(a, torch.Tensor) for a in (*args[1:2], kwargs.get("repeats"))):
        return "repeat_interleave with tensor repeats and no output_size has a value-dependent output shape"
    if name == "to" and _to_host(args[1:], kwargs):
        return "Tensor.to('cpu') copies a tensor to the host"
    return None


def _has_bool_tensor(index: Any) -> bool:
    items = index if isinstance(index, (tuple, list)) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _to_host(args: tuple, kwargs: dict[str, Any]) -> bool:
    # only a literal "cpu": on a CPU run `x.to(y.device)` names the CPU too, yet follows y to the GPU there
    return any(isinstance(a, str) and a.split(":")[0] == "cpu" for a in (*args, kwargs.get("device")))
