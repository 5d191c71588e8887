"""Fixtures proving our imported models compute what the official releases compute (tests/fixtures/published/).

    python scripts/make_release_fixtures.py RELEASE CHECKOUT [--commit SHA] [--out DIR] [--whole]

RELEASE is a release a `dynconv_bench.releases` entry point registers, whose module defines how to build its
fixtures (`release_fixtures`): built in, odconv, kernelwarehouse, kerneldna or timm (CHECKOUT: "-", the installed
timm). CHECKOUT is a snapshot of the release's public repository, imported from where it lies (never copied into this one). For
each fixture the release's own code builds its model (fixed seed; its random init, with every constant-initialised
tensor perturbed so that a misplaced BatchNorm or bias shows), in eval mode, and the script saves the tensors of the
whole model (small ones) or of one block/layer of each type, a fixed input to each and the release's output, and
for every supported architecture the full state_dict manifest (key, shape, dtype). --whole also imports each full
size architecture into ours and prints the largest relative difference of the logits (no file written).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dynconv_bench_variants.releases.layouts import mobilenetv2_block  # noqa: E402

from dynconv_bench.errors import UserError  # noqa: E402
from dynconv_bench.models.published import get_pair, import_state_dict, list_pairs, release_module  # noqa: E402

SEED = 0
TOL = 1e-5


def _release(checkout: str) -> Callable[[str, str], Callable]:
    """getattr(import module, name) from the checkout; timm names a release re-registers (KernelWarehouse:
    resnet18, mobilenetv2_*) are given back to timm so that our models stay timm's."""
    from timm.models import _registry

    sys.path.insert(0, checkout)

    def get(module: str, name: str) -> Callable:
        before = dict(_registry._model_entrypoints)
        obj = getattr(importlib.import_module(module), name)
        _registry._model_entrypoints.update(before)
        return obj

    return get


def release_fixtures(release: str) -> Any:
    """The module of `release` (its `dynconv_bench.releases` entry point, a third party's as a built-in's); it
    defines `fixture_builders(get) -> {arch: f(num_classes) -> the release's own model}` (`get(module, name)`
    imports from the checkout), `FIXTURE_CASES` [(arch, classes, input size, release modules whose input and
    output are saved; None = the whole model)] and, optionally, `fixture_tensors(model, modules) -> {key: tensor}`
    (more tensors the saved modules need, e.g. KernelWarehouse's warehouses)."""
    try:
        module = release_module(release)
    except UserError as exc:
        raise SystemExit(str(exc)) from None
    if not hasattr(module, "fixture_builders") or not hasattr(module, "FIXTURE_CASES"):
        raise SystemExit(f"release {release!r} ({module.__name__}) defines no fixture_builders and FIXTURE_CASES")
    return module


def builders(release: str, checkout: str) -> dict[str, Callable[..., nn.Module]]:
    """arch -> f(num_classes) building the release's own model, for every supported architecture."""
    return release_fixtures(release).fixture_builders(_release(checkout))


def ours_module(release: str, arch: str, name: str) -> str:
    """Our module name for a release module name (they differ only in the MobileNetV2 layouts)."""
    if arch.startswith("mobilenetv2") and name.startswith("features."):
        index, _, rest = name[len("features."):].partition(".")
        return mobilenetv2_block(int(index)) + (f".{rest}" if rest else "")
    return name


@torch.no_grad()
def perturb(model: nn.Module, seed: int = SEED) -> None:
    """Keep the release's random init; give every constant tensor (BN affine and statistics, zero biases,
    static modulations) random values, so that a tensor placed in the wrong slot changes the outputs."""
    g = torch.Generator().manual_seed(seed + 1)
    for name, t in model.state_dict().items():
        if not t.is_floating_point() or t.numel() == 0:
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif t.numel() == 1 or float(t.std()) == 0.0:
            t.add_(0.1 * torch.randn(t.shape, generator=g))


def build(release: str, arch: str, make: Callable[..., nn.Module], classes: int) -> nn.Module:
    torch.manual_seed(SEED)
    model = make(classes)
    perturb(model)
    return model.eval()


def manifest(model: nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]


def commit_of(checkout: str, given: str | None) -> str:
    if given:
        return given
    if checkout == "-":
        import timm

        return f"timm {timm.__version__}"
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("the checkout is not a git work tree: pass --commit SHA") from None


@torch.no_grad()
def make_case(release: str, arch: str, make: Callable, classes: int, size: int, modules: list[str] | None) -> dict:
    model = build(release, arch, make, classes)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(SEED + 2))
    case: dict = {"release": release, "arch": arch, "num_classes": classes, "whole": modules is None}
    if modules is None:
        case["state_dict"] = {k: v.clone() for k, v in model.state_dict().items()}
        case["cases"] = [{"release_module": "", "ours_module": "", "input": x, "output": model(x)}]
        return case
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep_first(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:  # None: the output stays
            seen.setdefault(name, (inputs[0].clone(), output.clone()))
        return hook

    hooks = [model.get_submodule(m).register_forward_hook(keep_first(m)) for m in modules]
    model(x)
    for h in hooks:
        h.remove()
    keep = tuple(m + "." for m in modules)
    sd = model.state_dict()
    case["state_dict"] = {k: v.clone() for k, v in sd.items() if k.startswith(keep)}
    extra = getattr(release_fixtures(release), "fixture_tensors", None)
    if extra is not None:  # e.g. the warehouses the saved layers take their cells from
        case["state_dict"].update(extra(model, modules))
    case["cases"] = [{"release_module": m, "ours_module": ours_module(release, arch, m), "input": seen[m][0],
                      "output": seen[m][1]} for m in modules]
    return case


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@torch.no_grad()
def check_whole(release: str, makers: dict[str, Callable]) -> int:
    bad = 0
    for arch, make in makers.items():
        try:
            pair = get_pair(release, arch)
        except Exception:
            continue
        model = build(release, arch, make, 1000)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(SEED + 2))
        ours = import_state_dict(pair, model.state_dict())
        err = relative_error(ours(x), model(x))
        bad += err > TOL
        line = (f"{pair.name}: whole model, 2x3x224x224, max |ours - release| / max |release| = {err:.2e} "
                f"({'ok' if err <= TOL else 'OVER ' + str(TOL)})")
        if err > TOL:  # equal math or not: both in fp64, and how far fp32 rounding alone moves the release
            ref64 = model(x).double()
            err64 = relative_error(ours.double()(x.double()), model.double()(x.double()))
            line += (f"; in fp64 {err64:.2e}; the release's own fp32 vs fp64 "
                     f"{relative_error(ref64, model(x.double())):.2e}")
        print(line, flush=True)
    return bad


PART_BYTES = 4_500_000  # committed files stay under the repository's 5 MB limit


def save_case(case: dict, path: Path) -> None:
    """`path` holds the case with the first state_dict tensors up to PART_BYTES; `path.part2`, ... the rest
    (tests/test_published.py merges them back)."""
    parts: list[dict] = [{}]
    size = 0
    for key, tensor in case["state_dict"].items():
        nbytes = tensor.numel() * tensor.element_size()
        if parts[-1] and size + nbytes > PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][key] = tensor
        size += nbytes
    for stale in path.parent.glob(f"{path.name}.part*"):  # parts of an earlier, larger case would be merged too
        stale.unlink()
    torch.save({**case, "state_dict": parts[0]}, path)
    for i, part in enumerate(parts[1:], start=2):
        torch.save(part, path.with_name(f"{path.name}.part{i}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("release")
    ap.add_argument("checkout", help='snapshot of the release repository ("-" for timm)')
    ap.add_argument("--commit", default=None, help="release commit (default: git rev-parse in the checkout)")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "published"))
    ap.add_argument("--whole", action="store_true", help="check every full-size architecture; write nothing")
    args = ap.parse_args()
    makers = builders(args.release, args.checkout)
    if args.whole:
        return 1 if check_whole(args.release, makers) else 0
    commit = commit_of(args.checkout, args.commit)
    out = Path(args.out) / args.release
    out.mkdir(parents=True, exist_ok=True)
    supported = {p.arch for p in list_pairs() if p.release == args.release}
    manifests = {}
    for arch, make in makers.items():
        if arch in supported:
            torch.manual_seed(SEED)
            manifests[arch] = manifest(make(1000))
    meta = {"release": args.release, "commit": commit, "torch": torch.__version__, "seed": SEED,
            "script": "scripts/make_release_fixtures.py", "manifests": manifests}
    with gzip.open(out / "manifests.json.gz", "wt") as f:  # keys repeat: a tenth of the plain JSON
        f.write(json.dumps(meta, separators=(",", ":")) + "\n")
    for arch, classes, size, modules in release_fixtures(args.release).FIXTURE_CASES:
        case = make_case(args.release, arch, makers[arch], classes, size, modules)
        case["commit"] = commit
        save_case(case, out / f"{arch}.pt")
        numel = sum(v.numel() for v in case["state_dict"].values())
        print(f"{args.release}:{arch}: {'whole model' if modules is None else ', '.join(modules)}; "
              f"{len(case['state_dict'])} tensors, {numel * 4 / 2**20:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
