"""Write the roofline model's predicted ratios (ResNet-18, batch 128, fp32, H200 by default) into docs/fused-kernels.md.

Every figure is the model's prediction (dynconv_bench.metrics.roofline), not a measurement.
Run: python scripts/roofline_table.py [--gpu h200] [--batch 128] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynconv_bench_variants._speed_configs import VARIANTS

from dynconv_bench.files import write_atomic
from dynconv_bench.metrics.roofline import GPUS, predict, static_conv_problems
from dynconv_bench.models.convert import create_model
from dynconv_bench.models.triton_aot import model_problems

DOC = Path(__file__).resolve().parents[1] / "docs" / "fused-kernels.md"
START, END = "<!-- roofline-table:start -->", "<!-- roofline-table:end -->"


def table(gpu: str, batch: int, dtype: str, backbone: str = "resnet18", size: int = 224) -> str:
    static = static_conv_problems(create_model(backbone, "static", num_classes=1000), (3, size, size))
    lines = ["| variant | predicted unfused (best per layer) | strategies picked | predicted fused |",
             "|---|---|---|---|"]
    for label, name, cfg in VARIANTS:
        p = predict(model_problems(backbone, name, cfg, size), static, GPUS[gpu], batch, dtype)
        picks: dict[str, int] = {}
        for layer in p.layers:
            best = min((t, s) for s, t in layer.strategies.items() if s != "fused" and t is not None)[1]
            picks[best] = picks.get(best, 0) + 1
        lines.append(f"| {label} | {p.ratio('unfused'):.2f} | "
                     f"{', '.join(f'{s} x{n}' for s, n in sorted(picks.items()))} | {p.ratio('fused'):.2f} |")
    lines.append(f"\n{backbone} {size}x{size}, batch {batch}, {dtype}, {GPUS[gpu].name}: predicted static conv time "
                 f"{p.static_s * 1e3:.2f} ms (convs only). Written by scripts/roofline_table.py.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", choices=list(GPUS), default="h200")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = ap.parse_args(argv)
    text = table(args.gpu, args.batch, args.dtype)
    doc = DOC.read_text()
    head, rest = doc.split(START, 1)
    write_atomic(DOC, head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
