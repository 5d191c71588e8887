"""`python -m dynconv_bench.training`: train and evaluate one backbone x variant x dataset x seed.

Runs as one process or under `torchrun --nproc_per_node N` (DDP; rank 0 prints and writes --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch

from ..errors import UserError


def build_parser(prog: str = "python -m dynconv_bench.training") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--backbone", default="cifar_resnet20", help="timm model or registered architecture")
    p.add_argument("--variant", default="static", help="registered variant (see `dynconv-bench variants`)")
    p.add_argument("--dataset", default="digits", help="synthetic, digits, cifar10, cifar100 or imagefolder")
    p.add_argument("--recipe", default=None, help="named recipe (default: the dataset's quick recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="local data directory (cifar*, imagefolder)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (cuda:<local rank> under torchrun)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (torch.set_num_threads), as a suite cell's `threads`; default: PyTorch's "
                        "(all cores). The suites train with 1: on a busy machine more threads can be far slower")
    p.add_argument("--checkpoint-dir", default=None, help="save every epoch here and resume from it")
    p.add_argument("--out", default=None, help="write the result JSON here (rank 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override, e.g. --set lr=0.05 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("config", nargs="*", metavar="key=value", help="variant config, e.g. num_kernels=4")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m dynconv_bench.training") -> int:
    """Entry point; returns the exit code (0 ok, 1 failed run, 2 user error)."""
    from ..config_text import parse_config
    from ..files import check_output_path, write_atomic
    from . import distributed as D
    from . import train_model
    from .recipes import RECIPES

    args = build_parser(prog).parse_args(argv)
    info = None
    try:
        if args.threads is not None:
            most = (os.cpu_count() or 1) * 4  # far more threads than cores crashes OpenMP
            if not 1 <= args.threads <= most:
                raise UserError(f"--threads must be an integer >= 1 and <= {most} (4 x the cores), got {args.threads}")
            torch.set_num_threads(args.threads)
        variant_cfg = parse_config(args.config)
        overrides = parse_config(args.overrides)
        if args.out:
            check_output_path(args.out, "training result", example="result.json")  # before the training, not after it
        if args.recipe is not None and args.recipe not in RECIPES:
            from ..errors import unknown_choice

            raise unknown_choice("recipe", args.recipe, RECIPES)
        info = D.init_distributed(args.device)

        def progress(epoch: int, total: int, entry: dict) -> None:
            if not args.quiet:
                test = f" test top1 {entry['test_top1']:.2f}" if entry.get("test_top1") is not None else ""
                eta = entry["train_time_s"] / epoch * (total - epoch)
                print(f"epoch {epoch}/{total} loss {entry['train_loss']:.4f} train top1 {entry['train_top1']:.2f}"
                      f"{test} ({entry['train_time_s']:.1f}s, eta {eta:.0f}s)", flush=True)

        result = train_model(args.backbone, args.variant, args.dataset, args.recipe, seed=args.seed,
                             data_root=args.data_root, device=info.device, epochs=args.epochs,
                             checkpoint_dir=args.checkpoint_dir, progress=progress, variant_cfg=variant_cfg,
                             **overrides)
        result["threads"] = torch.get_num_threads()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        D.cleanup()
        return 2
    if info.is_main:
        if args.out:
            try:
                write_atomic(args.out, json.dumps(result, indent=2, default=str), "training result")
            except UserError as exc:
                print(f"error: {exc}", file=sys.stderr)
                D.cleanup()
                return 2
        top5 = f" top5 {result['top5']:.2f}" if result["top5"] is not None else ""
        if result["status"] == "ok":
            print(f"{args.backbone} {args.variant} {result['dataset']} seed {args.seed}: top1 {result['top1']:.2f}{top5}"
                  f" loss {result['loss']:.4f} ({result['train_time_s']:.1f}s train, {info.world_size} process(es), "
                  f"{result['threads']} thread(s))")
        else:
            print(f"failed: {result['error']}", file=sys.stderr)
    D.cleanup()
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
