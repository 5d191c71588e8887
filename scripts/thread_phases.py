"""Does one process's forward time shift between levels while it runs? Times a deployed model's forward for
SECONDS in 0.25 s slices and prints each slice's median, for each thread count asked.

    python scripts/thread_phases.py                      # static cifar_resnet20, batch 1, 2 threads then 1
    python scripts/thread_phases.py --threads 2 --repeat 3 --backbone resnet18

On this project's 2-core VM, with 2 threads the same forward sits at one of several levels (about 1.6, 2.7 and
3.9 ms for static cifar_resnet20 at batch 1) for seconds or a whole process; with 1 thread it mostly stays at
2.0-2.3 ms, with shorter episodes up to 3.3 ms. Run it with the speed workers' malloc settings
(results/README.md) to leave the allocator out of it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

SLICE_S = 0.25


def _phases(backbone: str, variant: str, batch: int, threads: int, seconds: float) -> list[float]:
    import torch

    from dynconv_bench.models.convert import deploy
    from dynconv_bench.models.modelspec import ModelSpec

    torch.set_num_threads(threads)
    small = backbone.startswith("cifar")
    model = deploy(ModelSpec(backbone, variant, {}).build(10 if small else 1000)).eval()
    x = torch.randn(batch, 3, *((32, 32) if small else (224, 224)))
    medians, start = [], time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            times, begun = [], time.perf_counter()
            while time.perf_counter() - begun < SLICE_S or not times:
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
            medians.append(statistics.median(times) * 1e3)
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="cifar_resnet20")
    ap.add_argument("--variant", default="static")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per thread count")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(" ".join(f"{m:.2f}" for m in _phases(args.backbone, args.variant, args.batch, args.threads[0],
                                                      args.seconds)))
        return
    for threads in args.threads:
        for i in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", "--backbone", args.backbone, "--variant",
                                  args.variant, "--batch", str(args.batch), "--threads", str(threads), "--seconds",
                                  str(args.seconds)], capture_output=True, text=True, check=True).stdout.split()
            ms = [float(v) for v in out]
            print(f"{threads} thread(s), process {i + 1}: {min(ms):.2f}-{max(ms):.2f} ms per forward over "
                  f"{len(ms)} slices of {SLICE_S} s: {' '.join(out)}")


if __name__ == "__main__":
    main()
