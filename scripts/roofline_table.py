"""Write the cost model's tables into docs/fused-kernels.md: its calibration error per measured row, its
predicted ratios per variant (unfused and today's fused, b1 and b128, fp32 and bf16), and the fused designs of
metrics/fused_designs.py against both (with the calibration error beside them).

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
from dynconv_bench.metrics.fused_designs import NEW_DESIGNS
from dynconv_bench.metrics.roofline import FITTED, FITTED_ON, GPUS, predict_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_model_fit  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "fused-kernels.md"
MARKS = {"calibration": ("<!-- cost-model-calibration:start -->", "<!-- cost-model-calibration:end -->"),
         "variants": ("<!-- roofline-table:start -->", "<!-- roofline-table:end -->"),
         "designs": ("<!-- fused-designs:start -->", "<!-- fused-designs:end -->")}
SETTINGS = ((1, "fp32"), (1, "bf16"), (128, "fp32"), (128, "bf16"))  # bf16 with channels_last, as measured


def _mae() -> float:
    return cost_model_fit.table(cost_model_fit.load_rows(cost_model_fit.DATA), FITTED)[1]


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


def graph_calibration(gpu: str = "h200", backbone: str = "resnet18") -> tuple[float, int, float, float]:
    """The model in 'graph' mode against the 2026-11-26 H200 CUDA-graph rows at batch 1 (fp32): MAE of the ratio,
    rows, predicted and measured static ms. Not fitted on: it shows how far the graph rows can be trusted."""
    import json

    rows = [json.loads(line) for line in (cost_model_fit.DATA / "graphs.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["batch"] == 1 and r["precision"] == "fp32" and r["model"].endswith(" graph")]
    errors, static_ms = [], 0.0
    for r in rows:
        name = r["model"].removesuffix(" graph")
        if name == "static":
            static_ms = r["ms"]
            continue
        variant, cfg = cost_model_fit.VARIANTS[name]
        p = predict_model(backbone, variant, cfg, gpu, 1, "fp32", 224, mode="graph", fused=False)
        errors.append(abs(p.ratio("unfused") - r["ratio_to_static_same_mode"]))
    static = predict_model(backbone, "static", {}, gpu, 1, "fp32", 224, mode="graph", fused=False).static_s * 1e3
    return sum(errors) / len(errors), len(errors), static, static_ms


def bank_traffic(gpu: str, backbone: str = "resnet18", size: int = 224) -> str:
    """Bank tiles the CTAs of each design read per forward (fused_designs.bank_reads; L2 or HBM, not priced by
    the model), per mixture variant at b128 bf16 channels_last."""
    from dynconv_bench.metrics.fused_designs import DESIGNS, bank_reads, today
    from dynconv_bench.metrics.gpu_cost import trace_forward

    g, parts = GPUS[gpu], []
    for label, name, cfg in VARIANTS:
        problems: list = []

        def record(p, g, problems=problems):  # noqa: ANN001, ANN202
            problems.append(p)
            return today(p, g)

        trace_forward(backbone, name, cfg, 128, "bf16", True, size, {"today": record}, g)
        if any(p.num_k > 1 for p in problems):
            gb = {d: sum(bank_reads(p, g, d) for p in problems) / 1e9 for d in DESIGNS}
            parts.append(f"{label} " + ", ".join(f"{d} {v:.1f}" for d, v in gb.items()))
    return ("Bank tiles read by the CTAs per forward at b128 bf16 channels_last, GB (from L2 or HBM; the model "
            "charges the bank to HBM once and does not price these re-reads): " + "; ".join(parts) + ".")


DESIGN_SETTINGS = ((1, "fp32", "eager"), (1, "bf16", "eager"), (128, "fp32", "eager"), (128, "bf16", "eager"),
                   (1, "fp32", "graph"), (1, "bf16", "graph"))


def designs(gpu: str, backbone: str = "resnet18", size: int = 224) -> str:
    """Per variant and setting: predicted ratios of unfused, today's fused and each new design, and the margin
    of the best new design (cheapest per layer) over the better of unfused and today's fused."""
    mae = _mae()
    cols = ("unfused", "today", *NEW_DESIGNS, "best_new")
    lines = [f"| variant | setting (predicted ratio to static) | {' | '.join(cols)} | margin | beyond MAE {mae:.3f} |", "|---" * (len(cols) + 4) + "|"]
    wins = []
    for label, name, cfg in VARIANTS:
        for batch, dtype, mode in DESIGN_SETTINGS:
            p = predict_model(backbone, name, cfg, gpu, batch, dtype, size, mode=mode)
            r = {"unfused": p.ratio("unfused"), **{d: p.static_s / t for d, t in p.designs.items()}}
            margin = r["best_new"] - max(r["unfused"], r["today"])
            setting = f"b{batch} {dtype}{' cl' if dtype != 'fp32' else ''}{' graph' if mode == 'graph' else ''}"
            if margin > mae:
                wins.append(f"{label} {setting}")
            lines.append(f"| {label} | {setting} | {' | '.join(f'{r[c]:.2f}' for c in cols)} | {margin:+.3f} | "
                         f"{'yes' if margin > mae else 'no'} |")
    g_mae, g_rows, g_static, m_static = graph_calibration(gpu, backbone)
    lines.append(f"\n{backbone} {size}x{size}, {GPUS[gpu].name}; predicted ratios to static, not measurements "
                 f"(calibration MAE {mae:.3f} over the measured rows above). `graph`: static and the variant both "
                 f"replayed as CUDA graphs (today's fused path refuses graph capture); the model was not fitted on "
                 f"graph replays: against the {g_rows} ResNet-18 b1 fp32 graph rows of the 2026-11-26 H200 "
                 f"measurements its MAE is {g_mae:.3f} (static predicted {g_static:.2f} ms, measured {m_static:.2f} "
                 f"ms), so the graph rows are the least certain. Designs beating both unfused "
                 f"and today's fused by more than the MAE: {', '.join(wins) or 'none'}.\n\n{bank_traffic(gpu)} "
                 f"Written by scripts/roofline_table.py.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", choices=list(GPUS), default="h200")
    args = ap.parse_args(argv)
    doc = DOC.read_text()
    for key, text in (("calibration", calibration()), ("variants", variants(args.gpu)),
                      ("designs", designs(args.gpu))):
        start, end = MARKS[key]
        head, rest = doc.split(start, 1)
        doc = head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1]
        print(text + "\n")
    write_atomic(DOC, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
