"""How far each variant is from its limit on this GPU: measured eager vs forced-fused throughput next to the roofline.

Per built-in variant on ResNet-18 (224x224, deployed form), three settings: batch 1 as CUDA-graph replays (fp32),
batch 128 fp32, batch 128 bf16 channels_last. Each is timed for static, the variant as the tuner runs it ('auto':
the eager strategies, and 'fused' where the tuner picks it) and with 'fused' forced; the measured ratios to static
(same process, one after the other) are printed beside the roofline model's predicted ratios (labelled predicted).
`--dry-run` prints the plan and the predictions without a GPU. Used by scripts/gpu-check.sh.
Run: python fused_check.py [--dry-run] [--variants condconv,dcd] [--settings b1-graph,b128-fp32] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SETTINGS = {  # name: (batch, precision, channels_last, cuda_graph)
    "b1-graph": (1, "fp32", False, True),
    "b128-fp32": (128, "fp32", False, False),
    "b128-bf16": (128, "bf16", True, False),
}
BACKBONE, SIZE = "resnet18", 224


def _variants() -> dict[str, tuple[str, dict]]:
    from dynconv_bench_variants._speed_configs import VARIANTS

    return {label: (name, cfg) for label, name, cfg in VARIANTS}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the predictions; no GPU needed")
    ap.add_argument("--variants", default="all", help="comma-separated labels (default: all built-in variants)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--gpu", default="h200", help="roofline entry for the predictions (default h200)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of timed runs per measurement")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    known = _variants()
    args.variants = list(known) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    args.settings = [s for s in args.settings.split(",") if s]
    for what, given, valid in (("variant", args.variants, known), ("setting", args.settings, SETTINGS)):
        bad = [v for v in given if v not in valid]
        if bad or not given:
            ap.error(f"unknown {what} {', '.join(bad) or '(none given)'}; valid: {', '.join(valid)}")
    from dynconv_bench.metrics.roofline import GPUS

    if args.gpu not in GPUS:
        ap.error(f"unknown GPU {args.gpu!r}; valid: {', '.join(GPUS)}")
    return args


def predictions(labels: list[str], settings: list[str], gpu: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(variant, setting) -> predicted (best unfused, fused) ratio to static: the cost model
    (metrics/roofline.predict_model, the whole forward), not a measurement."""
    from dynconv_bench.metrics.roofline import predict_model

    out = {}
    for label in labels:
        name, cfg = _variants()[label]
        for s in settings:
            batch, prec, cl, graph = SETTINGS[s]
            p = predict_model(BACKBONE, name, cfg, gpu, batch, prec, SIZE, cl, "graph" if graph else "eager")
            out[label, s] = (p.ratio("unfused"), p.ratio("fused"))
    return out


def measure(label: str | None, setting: str, forced: str | None, min_time: float) -> float:
    """Measured images/s of static (label None) or a variant, with a strategy forced or the tuner's ('auto')."""
    import contextlib

    from dynconv_bench.metrics.timing import measure_inference
    from dynconv_bench.models.convert import create_model, deploy
    from dynconv_bench.models.per_sample_conv import use_strategy

    name, cfg = ("static", {}) if label is None else _variants()[label]
    batch, prec, cl, graph = SETTINGS[setting]
    model = deploy(create_model(BACKBONE, name, num_classes=1000, **cfg))
    with use_strategy(forced) if forced else contextlib.nullcontext():
        r = measure_inference(model, batch, (3, SIZE, SIZE), device="cuda", warmup=5, min_time=min_time,
                              min_runs=5, channels_last=cl, amp=None if prec == "fp32" else prec, cuda_graph=graph)
    if r.status != "ok" or not r.throughput:
        raise RuntimeError(r.error or "no throughput")
    return r.throughput


def _ratio(static: float, label: str, setting: str, forced: str | None, min_time: float) -> float | None:
    """Measured ratio to static (> 1: faster); a failure is reported on stderr and leaves the cell empty."""
    try:
        return measure(label, setting, forced, min_time) / static
    except Exception as exc:  # noqa: BLE001 (a failed configuration is a row, not the end of the check)
        print(f"  {label} {setting} {forced or 'auto'} failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    from dynconv_bench.metrics.roofline import FITTED_ON

    args = parse(argv)
    pred = predictions(args.variants, args.settings, args.gpu)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("fused_check: no CUDA device (torch.cuda.is_available() is False); --dry-run prints the plan",
                  file=sys.stderr)
            return 2
        print(f"fused_check: {torch.cuda.get_device_name(0)}; ResNet-18 {SIZE}x{SIZE}, deployed; ratio = static "
              f"time / variant time, measured one after the other in this process")
    print(f"predicted columns: cost model for {args.gpu} (whole forward; {FITTED_ON}), not measurements")
    rows = []
    head = f"{'variant':<16} {'setting':<10} {'auto':>6} {'fused':>6} {'pred unfused':>12} {'pred fused':>10}"
    print(head)
    for s in args.settings:
        static = None if args.dry_run else measure(None, s, None, args.min_time)
        for label in args.variants:
            auto = fused = None
            if not args.dry_run:
                t0 = time.time()
                auto, fused = (_ratio(static, label, s, forced, args.min_time) for forced in (None, "fused"))
                print(f"  ({label} {s}: {time.time() - t0:.0f} s)", file=sys.stderr)
            pu, pf = pred[label, s]
            rows.append({"variant": label, "setting": s, "measured_auto": auto, "measured_fused": fused,
                         "predicted_unfused": pu, "predicted_fused": pf})
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            print(f"{label:<16} {s:<10} {fmt(auto):>6} {fmt(fused):>6} {pu:>12.2f} {pf:>10.2f}", flush=True)
    if args.out is not None:
        from dynconv_bench.files import write_atomic

        write_atomic(args.out, json.dumps({"gpu_model": args.gpu, "dry_run": args.dry_run, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
