"""CPU inference throughput of our CondConv / DyConv / ODConv against the official implementations.

ResNet18 at 224x224, batch 1 and 16, eval mode, fp32. Each pair is timed round-robin in one process with
the library's timer (dynconv_bench.metrics.paired_timing: order reversed every other round) and compared by
the median over rounds of the per-round time ratio; before timing, the official
model's weights are loaded into ours and the outputs compared, so both compute the same function.

    python benchmarks/official_speed.py --odconv /path/to/OSVAI/ODConv \
        [--dyconv /path/to/kaijieshi7/dynamic_conv.py] [--threads 2] [--batch-sizes 1 16]

--odconv: a checkout of github.com/OSVAI/ODConv (its modules/odconv.py and models/od_resnet.py).
CondConv's reference is timm.layers.CondConv2d (timm's port of the official TensorFlow layer).
DyConv has no release by its authors; --dyconv takes the public re-implementation
github.com/kaijieshi7/Dynamic-convolution-Pytorch (dynamic_conv.py), skipped when not given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from timm.layers import CondConv2d as TimmCondConv2d
from torch import nn

import dynconv_bench
from dynconv_bench.metrics.paired_timing import round_ratios, time_interleaved
from dynconv_bench.models.sites import find_conv_sites, select_sites


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def _import_file(path: Path, name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the official models ------------------------------------------------------------------------
def official_odconv(repo: Path, num_kernels: int) -> nn.Module:
    """OSVAI/ODConv's od_resnet18 (1000 classes) with `num_kernels` kernels, temperature 1."""
    sys.path.insert(0, str(repo))
    try:
        from models.od_resnet import od_resnet18  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(repo))
    model = od_resnet18(kernel_num=num_kernels)
    model.net_update_temperature(1.0)
    return model


class TimmCondConvLayer(nn.Module):
    """timm's CondConv2d with per-layer routing sigmoid(Linear(GAP(x))), as in its EfficientNet blocks."""

    def __init__(self, conv: nn.Conv2d, num_experts: int) -> None:
        super().__init__()
        self.router = nn.Linear(conv.in_channels, num_experts)
        self.conv = TimmCondConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                   conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                                   num_experts=num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, torch.sigmoid(self.router(x.mean((2, 3)))))


def official_condconv(num_kernels: int) -> nn.Module:
    """timm resnet18 whose block convs (our default policy) are timm CondConv2d layers."""
    model = dynconv_bench.create_model("resnet18", "static")
    for site in select_sites(find_conv_sites(model), "blocks"):
        _set_module(model, site.name, TimmCondConvLayer(site.conv, num_kernels))
    return model


def public_dyconv(path: Path, num_kernels: int) -> nn.Module:
    """timm resnet18 whose convs but the stem (our default policy) are kaijieshi7's Dynamic_conv2d."""
    mod = _import_file(path, "kaijieshi7_dynamic_conv")
    model = dynconv_bench.create_model("resnet18", "static")
    for site in select_sites(find_conv_sites(model), "no-stem"):
        c = site.conv
        layer = mod.Dynamic_conv2d(c.in_channels, c.out_channels, c.kernel_size[0], 0.25, c.stride, c.padding,
                                   c.dilation, c.groups, c.bias is not None, K=num_kernels, temperature=31)
        layer.attention.temperature = 1.0
        _set_module(model, site.name, layer)
    return model


# -- weight transfer (so that both sides provably compute the same function) --------------------
def load_into_ours(ours: nn.Module, official: nn.Module) -> None:
    """Copy the official model's weights into ours.

    Names match except timm CondConv2d's `<layer>.conv.weight` (stored flat) and the public DyConv's
    bias-free attention (our attention biases are set to zero).
    """
    src = official.state_dict()
    out = {}
    for key, value in ours.state_dict().items():
        if key in src:
            new = src[key]
        elif ".attention.fc" in key and key.endswith(".bias"):
            new = torch.zeros_like(value)
        else:
            head, _, leaf = key.rpartition(".")
            new = src[f"{head}.conv.{leaf}"]
        out[key] = new.reshape(value.shape)
    ours.load_state_dict(out)


# -- timing (the library's round-robin timer) -----------------------------------------------------
def compare(ours: nn.Module, official: nn.Module, batch: int, rounds: int, min_time: float) -> dict:
    """Interleaved timing of two models on one input: medians and spreads over rounds, per-round ratios.

    Each round times each model for `min_time` seconds (at least one call), the order reversed every other
    round. Wall-clock time is the measure asked for; process CPU time is recorded beside it because on a
    shared, oversubscribed CPU the wall clock mostly measures waiting for a core.
    """
    x = torch.randn(batch, 3, 224, 224)
    models = {"ours": ours.eval(), "official": official.eval()}
    steps = {k: (lambda m=m: m(x)) for k, m in models.items()}
    cpu: dict[str, list[float]] = {}
    with torch.inference_mode():
        wall = time_interleaved(steps, torch.device("cpu"), rounds, warmup=1, min_time=min_time * rounds,
                                min_runs=1, cpu_times=cpu)
    out: dict = {"batch_size": batch, "rounds": rounds}
    for k in models:
        per_round = [statistics.median(r) for r in wall[k]]
        med = statistics.median(per_round)
        q = statistics.quantiles(per_round, n=4, method="inclusive") if len(per_round) > 1 else [med, med, med]
        out[k] = {"median_s": med, "iqr_s": q[2] - q[0], "min_s": min(per_round), "max_s": max(per_round),
                  "throughput": batch / med, "cpu_median_s": statistics.median(cpu[k])}
    ratios = round_ratios(wall["ours"], wall["official"])  # official time / ours per round: > 1, ours faster
    cpu_ratios = round_ratios([[c] for c in cpu["ours"]], [[c] for c in cpu["official"]])
    out["ratio_ours_over_official"] = statistics.median(ratios)
    out["ratio_min"], out["ratio_max"] = min(ratios), max(ratios)
    out["cpu_ratio_ours_over_official"] = statistics.median(cpu_ratios)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--odconv", type=Path, required=True, help="checkout of OSVAI/ODConv")
    ap.add_argument("--dyconv", type=Path, default=None, help="kaijieshi7/Dynamic-convolution-Pytorch dynamic_conv.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds (samples) per model")
    ap.add_argument("--min-time", type=float, default=0.0, help="seconds per timed sample (0: one call)")
    ap.add_argument("--only", nargs="+", default=None, choices=("odconv4x", "odconv1x", "condconv", "dyconv"),
                    help="subset of the pairs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.min_time < 0:
        ap.error("--rounds must be >= 1 and --min-time >= 0")
    wants_odconv = not args.only or {"odconv1x", "odconv4x"} & set(args.only)
    if wants_odconv and not (args.odconv / "models" / "od_resnet.py").is_file():
        ap.error(f"--odconv {args.odconv}: not a checkout of OSVAI/ODConv (no models/od_resnet.py)")
    if args.dyconv is not None and not args.dyconv.is_file():
        ap.error(f"--dyconv {args.dyconv}: no such file (kaijieshi7/Dynamic-convolution-Pytorch dynamic_conv.py)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    pairs: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], str]] = {
        "odconv4x": (lambda: dynconv_bench.create_model("resnet18", "odconv", num_kernels=4),
                     lambda: official_odconv(args.odconv, 4), "OSVAI/ODConv od_resnet18(kernel_num=4)"),
        "odconv1x": (lambda: dynconv_bench.create_model("resnet18", "odconv", num_kernels=1),
                     lambda: official_odconv(args.odconv, 1), "OSVAI/ODConv od_resnet18(kernel_num=1)"),
        "condconv": (lambda: dynconv_bench.create_model("resnet18", "condconv", num_kernels=4),
                     lambda: official_condconv(4), "timm.layers.CondConv2d, 4 experts"),
    }
    if args.dyconv is not None:
        pairs["dyconv"] = (lambda: dynconv_bench.create_model("resnet18", "dyconv", num_kernels=4),
                           lambda: public_dyconv(args.dyconv, 4),
                           "kaijieshi7/Dynamic-convolution-Pytorch Dynamic_conv2d, K=4")
    results = {"threads": args.threads, "torch": torch.__version__, "cpu_shared_note": "timings are noisy "
               "when the CPU is shared; compare ratios only", "pairs": {}}
    for name, (make_ours, make_official, desc) in pairs.items():
        if args.only and name not in args.only:
            continue
        ours, official = make_ours(), make_official()
        # annealing finished (temperature 1, as the official models are set): a step far past any anneal
        dynconv_bench.set_progress(ours, 1.0, iteration=10**9, iters_per_epoch=1, total_iters=10**9)
        load_into_ours(ours, official)
        x = torch.randn(2, 3, 224, 224)
        with torch.inference_mode():
            ref = official.eval()(x)
            diff = ((ours.eval()(x) - ref).abs().max() / ref.abs().max()).item()
        entry = {"official": desc, "max_output_diff_relative": diff, "batches": []}
        for b in args.batch_sizes:
            r = compare(ours, official, b, args.rounds, args.min_time)
            entry["batches"].append(r)
            print(f"{name:9s} batch {b:3d}: ours {r['ours']['throughput']:8.2f} img/s  official "
                  f"{r['official']['throughput']:8.2f} img/s  ratio {r['ratio_ours_over_official']:.3f}  "
                  f"cpu-time ratio {r['cpu_ratio_ours_over_official']:.3f}  "
                  f"(max |diff| / max |out| {diff:.1e})", flush=True)
        results["pairs"][name] = entry
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
