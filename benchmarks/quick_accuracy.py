"""Quick CPU accuracy comparison: every registered variant x {digits, synthetic} x 3 seeds.

    python benchmarks/quick_accuracy.py [--backbone cifar_resnet8] [--seeds 0 1 2] [--json out.json]

Prints top-1 mean +- std (sample std over seeds) per variant and dataset, and the total wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch

import dynconv_bench
from dynconv_bench.training import aggregate_seeds, train_model


def fmt(runs: list[dict]) -> str:
    agg = aggregate_seeds(runs, keys=("top1",))
    if not agg["ok"]:
        return "failed"
    failed = f" ({agg['failed']} failed)" if agg["failed"] else ""
    return f"{agg['top1_mean']:6.2f} +- {agg['top1_std']:4.2f}{failed}"


def _dump(path: str, backbone: str, wall: float, runs: list[dict]) -> None:
    with open(path, "w") as fh:
        json.dump({"total_wall_s": wall, "backbone": backbone, "threads": torch.get_num_threads(), "runs": runs},
                  fh, indent=1, default=str)


def print_table(runs: list[dict], variants: list[str], datasets: list[str], backbone: str, threads: int | None,
                total: float) -> None:
    seeds = sorted({r["seed"] for r in runs})
    print(f"\n{backbone}, threads {threads}, seeds {seeds}; top-1 % mean +- std over seeds")
    header = f"| {'variant':<10} | {'params':>8} | " + " | ".join(f"{d:^16}" for d in datasets) + " | time s |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        cells = [fmt([r for r in mine if r["dataset"] == d]) for d in datasets]
        wall = sum(r["wall_s"] for r in mine)
        print(f"| {variant:<10} | {mine[0].get('params', 0):>8,} | " + " | ".join(f"{c:^16}" for c in cells)
              + f" | {wall:6.0f} |")
    print(f"\ntotal wall time: {total:.0f} s ({total / 60:.1f} min) for {len(runs)} runs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="cifar_resnet8", help="CIFAR-style ResNet (resnet8 keeps 36 runs in budget)")
    p.add_argument("--variants", nargs="*", default=None, help="default: every registered variant")
    p.add_argument("--datasets", nargs="*", default=["digits", "synthetic"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="override the quick recipes' epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write every run's result here")
    p.add_argument("--summarize", default=None, metavar="JSON", help="only print the table of a saved --json file")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.summarize:
        with open(args.summarize) as fh:
            saved = json.load(fh)
        names = list(dict.fromkeys(r["variant"] for r in saved["runs"]))
        datasets = list(dict.fromkeys(r["dataset"] for r in saved["runs"]))
        print_table(saved["runs"], names, datasets, saved["backbone"], saved.get("threads"), saved["total_wall_s"])
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants or dynconv_bench.list_variants()
    runs: list[dict] = []
    start = time.perf_counter()
    # Seed-major order: an interrupted comparison still covers every variant, and load changes on a
    # shared machine spread over all variants instead of hitting one.
    for seed in args.seeds:
        for dataset in args.datasets:
            for variant in variants:
                t0 = time.perf_counter()
                res = train_model(args.backbone, variant, dataset, seed=seed, epochs=args.epochs)
                res["wall_s"] = time.perf_counter() - t0
                runs.append(res)
                top1 = f"{res['top1']:.2f}" if res["status"] == "ok" else f"FAILED ({res['error']})"
                print(f"{variant:<10} {dataset:<10} seed {seed}: top1 {top1} ({res['wall_s']:.1f}s)", flush=True)
                if args.json:
                    _dump(args.json, args.backbone, time.perf_counter() - start, runs)
    total = time.perf_counter() - start

    print_table(runs, variants, args.datasets, args.backbone, torch.get_num_threads(), total)
    if args.json:
        _dump(args.json, args.backbone, total, runs)
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
