"""Importing a release's state_dict: one `Pair` per (release, architecture), the mapping checks, file loading.

A pair names the `create_model(...)` call that builds our equivalent and a `place` function sending each
release key to the key(s) of ours it fills. `assemble` refuses, with one line naming both keys, a release
tensor with no place, a place our model lacks, a shape that differs, two tensors for one of ours, and any of
ours left unset.
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...discovery import RELEASE_GROUP, load_group
from ...errors import UserError, unknown_choice
from ...untrusted import describe_file_type, load_weights

# (our key, tensor) pairs a release tensor fills; [] = the release tensor carries nothing we keep (never silent:
# a pair lists such keys in `ignored` with the reason)
Placement = list[tuple[str, torch.Tensor]]
Placer = Callable[[str, torch.Tensor, nn.Module], Placement | None]  # (release key, tensor, our model)


@dataclass(frozen=True)
class EvalTransform:
    """A release's evaluation preprocessing: resize the short side, center crop, normalise."""

    resize: int
    crop: int
    interpolation: str  # "bilinear" or "bicubic" (torchvision names)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = ""


@dataclass(frozen=True)
class PaperResult:
    """The top-1 a paper or release reports for a model (a labelled reference, never a measurement)."""

    top1: float
    source: str


@dataclass(frozen=True)
class Pair:
    """One (release, architecture): our create_model call, the key mapping, eval transform, reported top-1."""

    release: str
    arch: str
    backbone: str
    variant: str
    config: Mapping[str, Any]
    place: Placer
    transform: EvalTransform
    classifier: str  # the release key of the classifier weight (its rows = the number of classes)
    paper: PaperResult | None = None
    release_builder: str = ""  # how the release's own code builds it (docs, fixture script)
    ignored: Mapping[str, str] = field(default_factory=dict)  # release key suffix -> why nothing of ours takes it

    @property
    def name(self) -> str:
        return f"{self.release}:{self.arch}"

    def build(self, num_classes: int = 1000) -> nn.Module:
        """Our model, randomly initialised, in the architecture of this pair."""
        from ..convert import create_model

        return create_model(self.backbone, self.variant, num_classes=num_classes, **dict(self.config))

    def matches(self, backbone: str, variant: str, config: Mapping[str, Any]) -> bool:
        """Whether a (backbone, variant, config) builds this pair's model: the same configs once defaults are filled."""
        from ..registry import get_variant

        if backbone != self.backbone or variant != self.variant:
            return False
        cls = get_variant(variant)
        try:
            return cls.validate(dict(config)) == cls.validate(dict(self.config))
        except UserError:
            return False


@dataclass(frozen=True)
class ImportRecord:
    """What an import loaded: the pair, the file and its sha256, the number of tensors mapped."""

    release: str
    arch: str
    path: str
    sha256: str
    tensors: int
    num_classes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_PAIRS: dict[tuple[str, str], Pair] = {}
_MODULES: dict[str, Any] = {}  # release name -> the module its entry point named (fixture makers live there)


_releases_loaded = False


def register_pair(pair: Pair) -> Pair:
    """Make a (release, architecture) importable; a release module calls it once per pair when imported."""
    _PAIRS[(pair.release, pair.arch)] = pair
    return pair


def _load_pairs() -> None:
    """Import (once, on the first lookup) the modules the `dynconv_bench.releases` entry points name.

    Built-in and third-party releases alike: each entry point's name is the release its module registers.
    """
    global _releases_loaded
    if _releases_loaded:
        return
    _releases_loaded = True
    load_group(RELEASE_GROUP, "release", _register_release)


def _register_release(ep: Any) -> None:
    _MODULES[ep.name] = ep.load()
    if not any(release == ep.name for release, _ in _PAIRS):
        warnings.warn(f"release entry point {ep.name!r} ({ep.value}) registered no pair of that release",
                      stacklevel=2)


def release_module(release: str) -> Any:
    """The module the entry point of `release` names (it registers the release's pairs and may define the
    maker of its test fixtures, see scripts/make_release_fixtures.py); a UserError names the releases."""
    _load_pairs()
    if release not in _MODULES:
        raise unknown_choice("release", release, sorted(_MODULES))
    return _MODULES[release]


def list_pairs() -> list[Pair]:
    """Every supported (release, architecture)."""
    _load_pairs()
    return list(_PAIRS.values())


def releases() -> list[str]:
    return sorted({p.release for p in list_pairs()})


def get_pair(release: str, arch: str) -> Pair:
    """The pair of `release` and `arch`; a UserError names the valid ones."""
    _load_pairs()
    if release not in releases():
        raise unknown_choice("release", release, releases())
    if (release, arch) not in _PAIRS:
        raise unknown_choice(f"{release} architecture", arch, [a for r, a in _PAIRS if r == release])
    return _PAIRS[(release, arch)]


def find_pair(release: str, backbone: str, variant: str, config: Mapping[str, Any]) -> Pair:
    """The pair of `release` whose model (backbone, variant, config) builds; a UserError lists the release's pairs."""
    _load_pairs()
    if release not in releases():
        raise unknown_choice("release", release, releases())
    found = [p for p in _PAIRS.values() if p.release == release and p.matches(backbone, variant, config)]
    if not found:
        mine = [p for p in _PAIRS.values() if p.release == release]
        near = [p for p in mine if p.backbone == backbone] or mine  # the same backbone's first, if any
        options = "; ".join(f"{p.arch} = {p.backbone} + {p.variant} {dict(p.config)}" for p in near)
        raise UserError(f"no {release} architecture is built by {backbone} + {variant} {dict(config)}; "
                        f"valid: {options}")
    return found[0]


# -- mapping ---------------------------------------------------------------------------------------
def _closest(key: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.0)
    return repr(close[0]) if close else "(none)"


def assemble(pair: Pair, release_sd: Mapping[str, torch.Tensor], ours: nn.Module,
             prefixes: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Our state_dict filled from the release's, every key checked (UserError names the first bad key).

    With `prefixes` (ours), only our keys under them must be set: a fixture holding some blocks of a model.
    """
    target = ours.state_dict(keep_vars=True)
    alias: dict[str, int] = {k: id(v) for k, v in target.items()}  # shared parameters fill together
    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    ignored = 0
    for key, tensor in release_sd.items():
        if not isinstance(key, str):  # a file's tensors are checked whole by read_state_dict
            raise UserError(f"{pair.name}: the state_dict has a key {key!r} ({type(key).__name__}), not a tensor name")
        placed = pair.place(key, tensor, ours)
        if placed is None:
            raise UserError(f"{pair.name}: release tensor {key!r} has no place in our {pair.backbone} + "
                            f"{pair.variant} (closest of ours: {_closest(key, list(target))})")
        if not placed:
            ignored += 1
        for ours_key, value in placed:
            if ours_key not in target:
                raise UserError(f"{pair.name}: release tensor {key!r} maps to {ours_key!r}, which our model lacks "
                                f"(closest of ours: {_closest(ours_key, list(target))})")
            want = tuple(target[ours_key].shape)
            if tuple(value.shape) != want:
                raise UserError(f"{pair.name}: release tensor {key!r} {tuple(value.shape)} does not fit ours "
                                f"{ours_key!r} {want}")
            if ours_key in source and source[ours_key] != key:
                raise UserError(f"{pair.name}: release tensors {source[ours_key]!r} and {key!r} both map to ours "
                                f"{ours_key!r}")
            if ours_key in out and not torch.equal(out[ours_key], value):
                raise UserError(f"{pair.name}: release tensor {key!r} fills ours {ours_key!r} twice, differently")
            want_dtype = target[ours_key].dtype
            # int64 or bool where ours holds floats: no weights. Not checked on a meta model (`_fitting_pair` finds
            # the architecture the file's shapes fit): the error then names the key when the values are loaded.
            if want_dtype.is_floating_point and not value.dtype.is_floating_point and not target[ours_key].is_meta:
                raise UserError(f"{pair.name}: release tensor {key!r} is {_dtype_name(value.dtype)}, but ours "
                                f"{ours_key!r} holds {_dtype_name(want_dtype)}: not weights of this model")
            out[ours_key] = value.to(want_dtype)
            source[ours_key] = key
    filled = {alias[k] for k in out}
    for key, value in target.items():
        if key in out:
            continue
        if alias[key] in filled:  # a shared parameter: the tensor placed under another of its names
            out[key] = next(out[k] for k in out if alias[k] == alias[key])
            continue
        if prefixes is not None and not any(key.startswith(p) for p in prefixes):
            out[key] = value.detach()
            continue
        raise UserError(f"{pair.name}: ours {key!r} {tuple(value.shape)} receives no release tensor (closest "
                        f"release key: {_closest(key, list(release_sd))})")
    return out


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_release_tensor(key: object, tensor: object, where: str) -> None:
    """A release tensor an import can take: a named, dense, materialised real tensor whose values are finite.

    A UserError (one line naming the key) for a key that is no string, a sparse or meta tensor (no values to
    load), a complex tensor, and a floating tensor holding NaN or Inf (it would import as a model that computes
    nothing, every one of ours set)."""
    if not isinstance(key, str):
        raise UserError(f"{where}: the state_dict has a key {key!r} ({type(key).__name__}), not a tensor name")
    if not isinstance(tensor, torch.Tensor):
        raise UserError(f"{where}: {key!r} is a {type(tensor).__name__}, not a tensor")
    if tensor.layout != torch.strided:
        raise UserError(f"{where}: release tensor {key!r} is a sparse tensor ({str(tensor.layout).removeprefix('torch.')}"
                        f"); weights are dense")
    if tensor.is_meta:
        raise UserError(f"{where}: release tensor {key!r} is a meta tensor: it has a shape but no values")
    if tensor.is_complex():
        raise UserError(f"{where}: release tensor {key!r} is {_dtype_name(tensor.dtype)}; weights are real numbers")
    if tensor.dtype.is_floating_point and tensor.numel():
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            what = "NaN" if bool(torch.isnan(tensor).any()) else "Inf"
            raise UserError(f"{where}: release tensor {key!r} {tuple(tensor.shape)} holds {bad} non-finite value(s) "
                            f"({what}): not usable weights")


def import_state_dict(pair: Pair, release_sd: Mapping[str, torch.Tensor],
                      prefixes: tuple[str, ...] | None = None, num_classes: int | None = None) -> nn.Module:
    """Our model of `pair` with the release's tensors loaded (eval mode, inference temperature)."""
    if num_classes is None:
        num_classes = classes_of(pair, release_sd)
    model = pair.build(num_classes)
    model.load_state_dict(assemble(pair, release_sd, model, prefixes), strict=True)
    return model.eval()


def classes_of(pair: Pair, release_sd: Mapping[str, torch.Tensor]) -> int:
    """The number of classes a release state_dict was trained for (rows of its classifier)."""
    if pair.classifier not in release_sd:
        raise UserError(f"{pair.name}: the file has no classifier tensor {pair.classifier!r} (closest key: "
                        f"{_closest(pair.classifier, list(release_sd))})")
    return int(release_sd[pair.classifier].shape[0])


# -- files -----------------------------------------------------------------------------------------
def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:  # e.g. EIO from /proc/self/mem
        raise UserError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a release checkpoint: a bare state_dict or one under 'state_dict'/'model'; 'module.' stripped.

    Loaded with torch's weights-only unpickler (a checkpoint never runs code); argparse.Namespace, which the
    releases' training scripts store beside the weights, is allowed.
    """
    import argparse

    path = Path(path)
    obj = load_weights(path, "checkpoint", safe_globals=[argparse.Namespace])
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} holds no state_dict (a dict of tensors, bare or under 'state_dict' "
                        "or 'model')")
    for key, tensor in obj.items():
        check_release_tensor(key, tensor, f"checkpoint {path}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def check_file(path: str | Path, sha256: str | None = None, size: int | None = None) -> str:
    """The file's sha256, after checking it against the expected sha256 and/or size (UserError on mismatch)."""
    path = Path(path)
    describe_file_type(path, "checkpoint")
    if size is not None and path.stat().st_size != size:
        raise UserError(f"checkpoint {path} has {path.stat().st_size} bytes, expected {size}")
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise UserError(f"checkpoint {path} has sha256 {digest}, expected {sha256.lower()}")
    return digest


def load_checkpoint(release: str, arch: str, path: str | Path, sha256: str | None = None,
                    size: int | None = None) -> tuple[nn.Module, ImportRecord]:
    """Our model with a release file's weights, and the record of what was loaded (file sha256 included)."""
    pair = get_pair(release, arch)
    digest = check_file(path, sha256, size)
    sd = read_state_dict(path)
    model = import_state_dict(pair, sd)
    record = ImportRecord(release, arch, str(path), digest, len(sd), classes_of(pair, sd))
    model.dynconv_import = record  # type: ignore[assignment]
    return model, record
