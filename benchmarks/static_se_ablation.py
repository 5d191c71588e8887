"""Why static-se trails static on the synthetic task: train it with parts of its SE branch changed.

Same cells as the cpu suite's synthetic accuracy (cifar_resnet20, synthetic-quick, 768 training images at
16x16, 3 epochs, one thread), same seeds, same initial weights per seed; only the SE branch differs:

- static: no SE;  se: static-se as defined (KernelDNA's SE: GAP -> 1x1 conv -> BN -> ReLU -> 1x1 conv -> sigmoid);
- se-no-bn: the BatchNorm on the pooled descriptor removed;  se-gate-1: gates start near 1 (expand bias 3).

    python benchmarks/static_se_ablation.py [--seeds 0 1 2] [--epochs 3] [--modes static se se-no-bn se-gate-1]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from dynconv_bench_variants._se import ChannelSE
from torch import nn

from dynconv_bench.data import dataset_info, training_subset
from dynconv_bench.models.modelspec import ModelSpec
from dynconv_bench.training import train_and_evaluate

MODES = ("static", "se", "se-no-bn", "se-gate-1")


def build(mode: str, seed: int, num_classes: int, channels: int) -> nn.Module:
    torch.manual_seed(seed)  # as the accuracy cell: the same initial weights for the same seed
    model = ModelSpec("cifar_resnet20", "static" if mode == "static" else "static-se", {}).build(num_classes, channels)
    for se in (m for m in model.modules() if isinstance(m, ChannelSE)):
        if mode == "se-no-bn":
            se.bn = nn.Identity()
        elif mode == "se-gate-1":
            nn.init.constant_(se.expand.bias, 3.0)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = dataset_info("synthetic")
    print(f"synthetic-quick, {args.epochs} epochs, 768 training images at 16x16, cifar_resnet20, "
          f"{args.threads} thread(s)\n\n| mode | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for mode in args.modes:
        tops = []
        for seed in args.seeds:
            model = build(mode, seed, info["num_classes"], info.get("channels", 3))
            out = train_and_evaluate(model, training_subset("synthetic", 768, seed, image_size=16), seed=seed, recipe="synthetic-quick",
                                     epochs=args.epochs, device="cpu")
            tops.append(out["top1"])
        print(f"| {mode} | " + " | ".join(f"{t:.2f}" for t in tops) + f" | {statistics.mean(tops):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
