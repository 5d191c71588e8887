"""Write the cost model's tables into docs/fused-kernels.md: its calibration error per measured row, and its
predicted ratios per variant (unfused and today's fused, b1 and b128, fp32 and bf16).

Every ratio it writes under "predicted" is the model's (dynconv_bench.metrics.roofline), not a measurement; the
measured column is the 2026-11-26 H200 run (shared/measured/h200-2026-11-26), quoted with that label.
Run: python scripts/roofline_table.py [--gpu h200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynconv_bench_variants._speed_configs import VARIANTS

from dynconv_bench.files import write_atomic
from dynconv_bench.metrics.roofline import FITTED, FITTED_ON, GPUS, predict_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_model_fit  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "fused-kernels.md"
MARKS = {"calibration": ("<!-- cost-model-calibration:start -->", "<!-- cost-model-calibration:end -->"),
         "variants": ("<!-- roofline-table:start -->", "<!-- roofline-table:end -->")}
SETTINGS = ((1, "fp32"), (1, "bf16"), (128, "fp32"), (128, "bf16"))  # bf16 with channels_last, as measured


def calibration() -> str:
    rows = cost_model_fit.load_rows(cost_model_fit.DATA)
    text, mae = cost_model_fit.table(rows, FITTED)
    consts = ", ".join(f"{k} {v:.4g}" for k, v in FITTED.__dict__.items())
    return (f"{text}\n\nMean absolute error {mae:.3f} over {len(rows)} rows. Constants: {consts} ({FITTED_ON}). "
            f"Written by scripts/roofline_table.py.")


def variants(gpu: str, backbone: str = "resnet18", size: int = 224) -> str:
    head = " | ".join(f"b{b} {d}{' cl' if d != 'fp32' else ''} unfused | fused" for b, d in SETTINGS)
    lines = [f"| variant | {head} |", "|---" * (1 + 2 * len(SETTINGS)) + "|"]
    for label, name, cfg in VARIANTS:
        cells = []
        for batch, dtype in SETTINGS:
            p = predict_model(backbone, name, cfg, gpu, batch, dtype, size)
            cells += [f"{p.ratio('unfused'):.2f}", f"{p.ratio('fused'):.2f}"]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append(f"\n{backbone} {size}x{size}, eager, {GPUS[gpu].name}; predicted ratios to static, not measurements. "
                 f"Written by scripts/roofline_table.py.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", choices=list(GPUS), default="h200")
    args = ap.parse_args(argv)
    doc = DOC.read_text()
    for key, text in (("calibration", calibration()), ("variants", variants(args.gpu))):
        start, end = MARKS[key]
        head, rest = doc.split(start, 1)
        doc = head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1]
        print(text + "\n")
    write_atomic(DOC, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
