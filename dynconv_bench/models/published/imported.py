"""`load_imported(path)`: the model a `dynconv-bench import` file describes, with its weights loaded.

The file `import` writes is a dict: `backbone`, `variant`, `config` (our `create_model` call), `num_classes`,
`state_dict` (our model's tensors), and the record of where they came from (`release`, `arch`, `source_file`,
`source_sha256`). It is read with torch's weights-only loader (`dynconv_bench.untrusted.load_weights`: the file
never runs code), every field and every tensor is checked against the model the call builds, and any mismatch is
one UserError line naming the field or key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ...errors import UserError
from ...files import show_path
from ...untrusted import load_weights

WHAT = "imported model"
# field -> (type, what it is); `config` values are checked by the variant's own validation when the model is built
REQUIRED = {"backbone": (str, "a backbone name"), "variant": (str, "a variant name"),
            "config": (dict, "a dict of the variant's config"), "num_classes": (int, "a positive integer"),
            "state_dict": (dict, "a dict of tensors")}
RECORD = ("release", "arch", "source_file", "source_sha256")


def _fields(obj: Any, where: str) -> dict[str, Any]:
    bare = isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())
    if not isinstance(obj, dict) or bare:
        what = "a bare state_dict (no model to build it into)" if bare else f"a {type(obj).__name__}"
        raise UserError(f"{where} holds {what}, not the dict `dynconv-bench import` writes "
                        f"({', '.join(REQUIRED)}, ...)")
    for key, (kind, text) in REQUIRED.items():
        if key not in obj:
            raise UserError(f"{where} has no {key!r} (an import file holds {', '.join(REQUIRED)}); write it with "
                            "`dynconv-bench import RELEASE FILE -o OUT`")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (key == "num_classes" and value < 1):
            raise UserError(f"{where}: {key!r} is {show_path(repr(value), 80)}, not {text}")
    if not all(isinstance(k, str) for k in obj["config"]):
        raise UserError(f"{where}: 'config' has a key that is no string")
    return obj


def _check_tensors(sd: Mapping[Any, Any], model: nn.Module, where: str) -> None:
    """Every key of ours present once with our shape and a usable dtype, no key of another model, no NaN/Inf."""
    ours = model.state_dict()
    for key, value in sd.items():
        if not isinstance(key, str):
            raise UserError(f"{where}: the state_dict has a key {show_path(repr(key), 80)} "
                            f"({type(key).__name__}), not a tensor name")
        if key not in ours:
            raise UserError(f"{where}: tensor {show_path(key, 120)!r} is not in the model it describes "
                            f"({type(model).__name__})")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{where}: {show_path(key, 120)!r} is a {type(value).__name__}, not a tensor")
        want = ours[key]
        if value.layout != torch.strided or value.is_meta:
            raise UserError(f"{where}: tensor {key!r} has no dense values (layout "
                            f"{str(value.layout).removeprefix('torch.')}{', meta' if value.is_meta else ''})")
        if tuple(value.shape) != tuple(want.shape):
            raise UserError(f"{where}: tensor {key!r} {tuple(value.shape)} does not fit the model's "
                            f"{tuple(want.shape)}")
        if value.is_complex() or (want.is_floating_point() and not value.is_floating_point()):
            raise UserError(f"{where}: tensor {key!r} is {str(value.dtype).removeprefix('torch.')}, the model's "
                            f"{str(want.dtype).removeprefix('torch.')}")
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise UserError(f"{where}: tensor {key!r} holds {bad} non-finite value(s): not usable weights")
    missing = [k for k in ours if k not in sd]
    if missing:
        raise UserError(f"{where}: the model's tensor {missing[0]!r} is missing"
                        + (f" ({len(missing)} missing)" if len(missing) > 1 else ""))


def load_imported(path: str | os.PathLike[str]) -> nn.Module:
    """The model a `dynconv-bench import` output describes (`create_model(backbone, variant, num_classes=...,
    **config)`), its weights loaded, in eval mode. `model.dynconv_imported` holds the file's record (release,
    arch, source file and its sha256). A file that is not such a dict, or whose tensors do not fit the model, is a
    one-line UserError; the file is loaded weights-only and never runs code."""
    from ..convert import create_model

    where = f"{WHAT} {show_path(path)}"
    data = _fields(load_weights(path, WHAT), where)
    try:
        model = create_model(data["backbone"], data["variant"], num_classes=data["num_classes"], **data["config"])
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    _check_tensors(data["state_dict"], model, where)
    model.load_state_dict(data["state_dict"], strict=True)
    model.dynconv_imported = {k: data.get(k) for k in RECORD} | {  # type: ignore[assignment]
        "file": os.fspath(path), "backbone": data["backbone"], "variant": data["variant"],
        "config": dict(data["config"]), "num_classes": data["num_classes"]}
    return model.eval()


__all__ = ["load_imported"]
