"""KernelDNA inference throughput against its static baselines, as ratios measured in one run.

Two comparisons, each at every batch size (default 1 and 16, 224x224, fp32, CPU):
- `plugin`: the deployed `kerneldna` plug-in on ResNet-18 vs `static` and `static-se`;
- `arch`: each paper architecture (deployed) vs its static timm backbone.
The models of one comparison are timed round-robin by the library's timer
(dynconv_bench.metrics.paired_timing: A, B, C, then C, B, A, ...), so that drift in a shared machine's
load hits them alike; a ratio is reported both as the ratio of median
throughputs and as the median of the per-round ratios.

    python benchmarks/kerneldna_speed.py --threads 2 --rounds 7 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import torch
from torch import nn

import dynconv_bench
from dynconv_bench.metrics.paired_timing import round_ratios, time_interleaved

PLUGIN = {"resnet18 static": ("resnet18", "static"), "resnet18 static-se": ("resnet18", "static-se"),
          "resnet18 kerneldna": ("resnet18", "kerneldna")}
ARCHS = {"resnet18": "kerneldna_resnet18", "resnet50": "kerneldna_resnet50",
         "mobilenetv2_100": "kerneldna_mobilenetv2_100", "mobilenetv2_050": "kerneldna_mobilenetv2_050"}


def build(backbone: str, variant: str = "static") -> nn.Module:
    """The deployed (inference) form of a backbone converted with a variant."""
    return dynconv_bench.deploy(dynconv_bench.create_model(backbone, variant))


@torch.inference_mode()
def measure(models: dict[str, nn.Module], batch_size: int, rounds: int, round_time: float,
            input_size: tuple[int, int, int] = (3, 224, 224), warmup: int = 2) -> dict[str, list[list[float]]]:
    """Per-run seconds per batch of each model in each round, timed round-robin by the library's timer
    (about `round_time` seconds per model per round, at least one run; order reversed every other round)."""
    x = torch.randn(batch_size, *input_size)
    steps = {name: (lambda m=model: m(x)) for name, model in models.items()}
    return time_interleaved(steps, torch.device("cpu"), rounds, warmup, round_time * rounds, min_runs=1)


def summarize(times: dict[str, list[list[float]]], batch_size: int,
              baselines: dict[str, str]) -> list[dict[str, Any]]:
    """Rows with median latency and IQR over rounds (a round's time: its median run), throughput, and
    ratios against each model's baseline: of the medians, and the median of the per-round ratios."""
    per_round = {name: [statistics.median(r) for r in rounds] for name, rounds in times.items()}
    rows = []
    for name, ts in per_round.items():
        q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) > 1 else [ts[0]] * 3
        med = statistics.median(ts)
        row: dict[str, Any] = {"model": name, "batch_size": batch_size, "rounds": len(ts),
                               "latency_ms": 1e3 * med, "iqr_ms": 1e3 * (q[2] - q[0]),
                               "throughput": batch_size / med}
        base = baselines.get(name)
        if base is not None:
            row["vs"] = base
            row["ratio_of_medians"] = statistics.median(per_round[base]) / med
            row["median_round_ratio"] = statistics.median(round_ratios(times[name], times[base]))
        rows.append(row)
    return rows


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'model':<28}{'batch':>6}{'rounds':>7}{'latency ms':>12}{'IQR ms':>9}{'img/s':>9}  ratio (medians / per-round)")
    for r in rows:
        ratio = (f"  {r['ratio_of_medians']:.3f} / {r['median_round_ratio']:.3f} vs {r['vs']}"
                 if "vs" in r else "")
        print(f"{r['model']:<28}{r['batch_size']:>6}{r['rounds']:>7}{r['latency_ms']:>12.2f}{r['iqr_ms']:>9.2f}"
              f"{r['throughput']:>9.1f}{ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed for the whole run)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per model")
    parser.add_argument("--round-time", type=float, default=0.3, help="approximate seconds per model per round")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--only", choices=("plugin", "arch"), default=None, help="run one comparison only")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.round_time < 0 or args.image_size < 1:
        parser.error("--rounds and --image-size must be >= 1, --round-time >= 0")

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    size = (3, args.image_size, args.image_size)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {size}, fp32, CPU, "
          f"{args.rounds} interleaved rounds of ~{args.round_time}s per model")
    results: list[dict[str, Any]] = []
    if args.only in (None, "plugin"):
        models = {name: build(*spec) for name, spec in PLUGIN.items()}
        base = {"resnet18 kerneldna": "resnet18 static", "resnet18 static-se": "resnet18 static"}
        for bs in args.batch_sizes:
            times = measure(models, bs, args.rounds, args.round_time, size)
            rows = summarize(times, bs, base)
            se_rows = summarize(times, bs, {"resnet18 kerneldna": "resnet18 static-se"})
            rows.append({**se_rows[-1], "model": "resnet18 kerneldna"})
            _print(f"plug-in on ResNet-18, batch {bs}", rows)
            results += [{**r, "comparison": "plugin"} for r in rows]
    if args.only in (None, "arch"):
        for bs in args.batch_sizes:
            models = {}
            base = {}
            for static, arch in ARCHS.items():
                models[static] = build(static)
                models[arch] = build(arch)
                base[arch] = static
            rows = summarize(measure(models, bs, args.rounds, args.round_time, size), bs, base)
            _print(f"paper architectures (deployed) vs static backbones, batch {bs}", rows)
            results += [{**r, "comparison": "arch"} for r in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
