"""Validate the speed harness against torch.utils.benchmark.Timer on static ResNet18, in one run.

Both time the same model (same weights, eval, inference_mode) on the same input with the same thread
count; the measurements are interleaved over several rounds so that load on a shared machine hits both
alike, and the medians of the per-round throughputs are compared. Agreement means a ratio in [0.9, 1.1].

    python benchmarks/validate_timer.py [--batch-size 1] [--threads 1] [--rounds 6] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
from torch.utils.benchmark import Timer

import dynconv_bench
from dynconv_bench.metrics.env import collect_environment
from dynconv_bench.metrics.timing import measure_inference


def timer_throughput(model: torch.nn.Module, x: torch.Tensor, threads: int, min_time: float) -> float:
    """Images/s from torch.utils.benchmark.Timer (median of its blocked runs; it synchronises CUDA)."""
    timer = Timer(stmt="with torch.inference_mode():\n    model(x)", globals={"model": model, "x": x, "torch": torch},
                  num_threads=threads, label="resnet18", description="Timer")
    return x.shape[0] / timer.blocked_autorange(min_run_time=min_time).median


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = dynconv_bench.create_model("resnet18", "static").eval().to(args.device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    with torch.inference_mode():  # warm both up once (oneDNN / cuDNN primitive caches)
        for _ in range(3):
            model(x)
    harness, timer = [], []
    for r in range(args.rounds):
        if r % 2:  # alternate which goes first, so a drift in machine load hits both alike
            timer.append(timer_throughput(model, x, args.threads, args.min_time))
        res = measure_inference(model, args.batch_size, tuple(x.shape[1:]), device=args.device, threads=args.threads,
                                warmup=2, min_time=args.min_time)
        if not res.ok:
            print(f"harness failed: {res.error}", file=sys.stderr)
            return 1
        harness.append(res.throughput)
        if not r % 2:
            timer.append(timer_throughput(model, x, args.threads, args.min_time))
        print(f"round {r + 1}: harness {harness[-1]:.2f} img/s ({res.runs} runs, IQR {res.iqr_s * 1e3:.2f} ms), "
              f"Timer {timer[-1]:.2f} img/s", flush=True)
    h, t = statistics.median(harness), statistics.median(timer)
    ratio = h / t
    ok = 0.9 <= ratio <= 1.1
    env = collect_environment()
    print(json.dumps({"device": args.device, "cpu": env["cpu_model"], "gpu": env["gpu"], "threads": args.threads,
                      "batch_size": args.batch_size, "image_size": args.image_size, "harness_img_s": round(h, 2),
                      "timer_img_s": round(t, 2), "ratio": round(ratio, 4), "agree_within_10pct": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
