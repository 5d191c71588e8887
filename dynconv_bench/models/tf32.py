"""Whether fp32 convs (cuDNN) and matmuls (cuBLAS) may round to TF32, read the way the installed torch expects.

torch >= 2.9 has `fp32_precision` ('tf32', 'ieee' or 'none' = inherit from the backend, then from
`torch.backends.fp32_precision`); reading the legacy `allow_tf32` after the new API was used raises a
RuntimeError there, and newer releases drop the legacy attribute from some objects. Older torch has only
`allow_tf32`. Every reader and writer of these switches in the package goes through this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_NEW_API = hasattr(torch.backends, "fp32_precision")


def _resolved(*chain: object) -> str | None:
    """The first setting in `chain` (op, backend, global) that is not 'none'; None when all inherit."""
    for obj in chain:
        value = getattr(obj, "fp32_precision", "none")
        if value != "none":
            return value
    return None


def conv_tf32() -> bool:
    """True when cuDNN may run fp32 convolutions in TF32."""
    if _NEW_API:
        value = _resolved(torch.backends.cudnn.conv, torch.backends.cudnn, torch.backends)
        return value == "tf32" if value is not None else True  # cuDNN's default is TF32
    return bool(torch.backends.cudnn.allow_tf32)


def matmul_tf32() -> bool:
    """True when cuBLAS may run fp32 matmuls in TF32."""
    if _NEW_API:
        value = _resolved(torch.backends.cuda.matmul, torch.backends)
        return value == "tf32" if value is not None else torch.get_float32_matmul_precision() != "highest"
    return bool(torch.backends.cuda.matmul.allow_tf32)


def _set(conv: bool | None, matmul: bool | None) -> None:
    if _NEW_API:
        if conv is not None:
            torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
        if matmul is not None:
            torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
        return
    if conv is not None:
        torch.backends.cudnn.allow_tf32 = conv
    if matmul is not None:
        torch.backends.cuda.matmul.allow_tf32 = matmul


@contextlib.contextmanager
def tf32_switches(conv: bool | None = None, matmul: bool | None = None) -> Iterator[None]:
    """Set the TF32 switches (None leaves one as it is) for the block; restore the previous settings after."""
    saved = conv_tf32(), matmul_tf32()
    _set(conv, matmul)
    try:
        yield
    finally:
        _set(*saved)
