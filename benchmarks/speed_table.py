"""The speed table of the README: every variant's CPU throughput as a ratio to static, one process, interleaved.

ResNet18 at 224x224, fp32, eval mode, deployed form. Each round times one forward of every model (the order
reversed every other round), the ratio to static is taken per round and the median over rounds is reported,
so that drift in a shared machine's load hits every model alike. The per-sample conv strategy each model's
layers ran with (autotuned unless DYNCONV_BENCH_STRATEGY forces one) is printed beside the table.

    python benchmarks/speed_table.py --threads 2 --batch-sizes 1 16 64 --rounds 7 \
        [--odconv /tmp/official/ODConv] [--json out.json]

--odconv: a checkout of github.com/OSVAI/ODConv (modules/odconv.py, models/od_resnet.py); adds the official
ODConv 1x/4x as rows and the ours/official ratio, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import dynconv_bench
from dynconv_bench.models.per_sample_conv import record_strategies

sys.path.insert(0, str(Path(__file__).parent))
from official_speed import official_odconv  # noqa: E402

MODELS: dict[str, Callable[[], nn.Module]] = {
    "static": lambda: dynconv_bench.create_model("resnet18"),
    "static-se": lambda: dynconv_bench.create_model("resnet18", "static-se"),
    "condconv 4x": lambda: dynconv_bench.create_model("resnet18", "condconv", num_kernels=4),
    "dyconv 4x": lambda: dynconv_bench.create_model("resnet18", "dyconv", num_kernels=4),
    "odconv 1x": lambda: dynconv_bench.create_model("resnet18", "odconv", num_kernels=1),
    "odconv 4x": lambda: dynconv_bench.create_model("resnet18", "odconv", num_kernels=4),
    "kerneldna plug-in": lambda: dynconv_bench.create_model("resnet18", "kerneldna"),
    "kerneldna_resnet18": lambda: dynconv_bench.create_model("kerneldna_resnet18"),
}


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def measure(models: dict[str, nn.Module], batch: int, rounds: int) -> dict[str, dict]:
    """Median over rounds of each model's throughput ratio to static, and the strategies its layers used."""
    x = torch.randn(batch, 3, 224, 224)
    times: dict[str, list[float]] = {k: [] for k in models}
    strategies: dict[str, dict[str, int]] = {}
    with torch.inference_mode():
        for name, m in models.items():  # warm-up; the first forward also tunes the strategies
            m(x)
            with record_strategies() as used:
                m(x)
            strategies[name] = dict(sorted(used.items()))
        order = list(models)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                models[name](x)
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name in models:
        ratios = [s / t for s, t in zip(times["static"], times[name])]
        out[name] = {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                     "median_s": statistics.median(times[name]), "strategies": strategies[name]}
    return out


def _strategy_text(s: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in s.items()) or "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--odconv", type=Path, default=None, help="checkout of OSVAI/ODConv (adds official rows)")
    ap.add_argument("--only", nargs="+", default=None, help=f"subset of: {', '.join(MODELS)}")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.only and set(args.only) - set(MODELS):
        print(f"error: --only takes models from: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    builders = {k: v for k, v in MODELS.items() if not args.only or k in args.only or k == "static"}
    if args.odconv is not None:
        builders["official odconv 1x"] = lambda: official_odconv(args.odconv, 1)
        builders["official odconv 4x"] = lambda: official_odconv(args.odconv, 4)
    models = {}
    for name, build in builders.items():
        m = build()
        # annealing finished (temperature 1, as the official models are set): a step far past any anneal
        dynconv_bench.set_progress(m, 1.0, iteration=10**9, iters_per_epoch=1, total_iters=10**9)
        models[name] = dynconv_bench.deploy(m).eval() if not name.startswith("official") else m.eval()
    load_before = _load()
    results = {b: measure(models, b, args.rounds) for b in args.batch_sizes}
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)",
            "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
            "load_before": load_before, "load_after": _load()}
    bs = args.batch_sizes
    print(f"ResNet18 224x224, CPU fp32, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"throughput ratio to static (median over rounds; min-max in brackets). {meta['date']}, "
          f"{meta['machine']}, {load_before} before / {meta['load_after']} after.\n")
    print("| model | " + " | ".join(f"b{b}" for b in bs) + " | strategy (layers) |")
    print("|---|" + "---|" * len(bs) + "---|")
    for name in models:
        cells = [f"{results[b][name]['ratio']:.2f} ({results[b][name]['ratio_min']:.2f}-"
                 f"{results[b][name]['ratio_max']:.2f})" for b in bs]
        strat = "; ".join(f"b{b}: {_strategy_text(results[b][name]['strategies'])}" for b in bs
                          if results[b][name]["strategies"])
        print(f"| {name} | " + " | ".join(cells) + f" | {strat or '-'} |")
    if args.odconv is not None:
        for k in ("1x", "4x"):
            if f"odconv {k}" in models:
                vals = [results[b][f"odconv {k}"]["ratio"] / results[b][f"official odconv {k}"]["ratio"] for b in bs]
                print(f"| odconv {k} ours / official | " + " | ".join(f"{v:.2f}" for v in vals) + " | |")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
