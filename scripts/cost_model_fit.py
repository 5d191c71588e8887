"""Refit the cost model's constants to the 2026-11-26 H200 measurements and print the per-row table.

Rows: the ResNet-18 `speed` rows of shared/measured/h200-2026-11-26/paired_gpu.jsonl for our own variants (the
releases' own code and the KernelDNA architecture are left out: the model traces only registered variants on a
standard backbone), eager, fp32 at batch 1 and 128 and bf16 channels_last at 128. The fit minimises the sum of
squared errors of the predicted ratio to static over the five constants of `roofline.Constants` (Nelder-Mead on
their logarithms, from `roofline.FITTED`). Every predicted figure is the model's, not a measurement.
Run: python scripts/cost_model_fit.py [--data DIR] [--no-fit] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dynconv_bench.metrics.roofline import FITTED, GPUS, Constants, compiled_trace, forward_time

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((d for d in (_ROOT / "shared" / "measured" / "h200-2026-11-26",
                         _ROOT.parent / "shared" / "measured" / "h200-2026-11-26") if d.is_dir()),
            _ROOT / "shared" / "measured" / "h200-2026-11-26")
# the measurement's model label -> (registered variant, config)
VARIANTS = {"static-se": ("static-se", {}), "kerneldna plug-in": ("kerneldna", {}),
            "condconv 4x": ("condconv", {"num_kernels": 4}), "dyconv 4x": ("dyconv", {"num_kernels": 4}),
            "odconv 1x": ("odconv", {"num_kernels": 1}), "odconv 4x": ("odconv", {"num_kernels": 4}),
            "kernelwarehouse": ("kernelwarehouse", {}), "dcd": ("dcd", {})}


def load_rows(data: Path, backbone: str = "resnet18") -> list[dict]:
    """The measured rows the model is fitted on: (model, batch, precision, channels_last, ratio_to_static)."""
    rows = []
    for line in (data / "paired_gpu.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "speed" and r.get("backbone") == backbone and r["model"] in VARIANTS:
            rows.append(r)
    return rows


def predicted(rows: list[dict], c: Constants, gpu: str = "h200", backbone: str = "resnet18") -> list[float]:
    g = GPUS[gpu]
    out = []
    for r in rows:
        args = (r["batch"], r["precision"], r["channels_last"], 224)
        static = forward_time(compiled_trace(backbone, "static", {}, *args), g, c)[0]
        out.append(static / forward_time(compiled_trace(backbone, *VARIANTS[r["model"]], *args), g, c)[0])
    return out


def loss(rows: list[dict], c: Constants) -> float:
    return sum((p - r["ratio_to_static"]) ** 2 for p, r in zip(predicted(rows, c), rows))


def nelder_mead(f, x0: list[float], step: float = 0.3, iters: int = 400, tol: float = 1e-9) -> list[float]:  # noqa: ANN001
    """Minimise f over R^n (plain Nelder-Mead: reflection, expansion, contraction, shrink)."""
    n = len(x0)
    simplex = [list(x0)] + [[x + (step if i == j else 0.0) for j, x in enumerate(x0)] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < tol:
            break
        centre = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        refl = [c + (c - w) for c, w in zip(centre, simplex[-1])]
        fr = f(refl)
        if fr < values[0]:
            exp = [c + 2 * (c - w) for c, w in zip(centre, simplex[-1])]
            fe = f(exp)
            simplex[-1], values[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = refl, fr
        else:
            con = [c + 0.5 * (w - c) for c, w in zip(centre, simplex[-1])]
            fc = f(con)
            if fc < values[-1]:
                simplex[-1], values[-1] = con, fc
            else:
                simplex = [simplex[0]] + [[b + 0.5 * (x - b) for b, x in zip(simplex[0], s)] for s in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]


def fit(rows: list[dict], start: Constants = FITTED) -> Constants:
    def f(logs: list[float]) -> float:
        c = Constants(*(math.exp(v) for v in logs))
        if c.tensor_tf32 > 1 or c.tensor_half > 1 or c.memory > 1:
            return 1e9  # a fraction of a data-sheet peak
        return loss(rows, c)
    return Constants(*(math.exp(v) for v in nelder_mead(f, [math.log(v) for v in start.as_tuple()])))


def table(rows: list[dict], c: Constants) -> tuple[str, float]:
    """The per-row markdown table and the mean absolute error of the predicted ratio to static."""
    pred = predicted(rows, c)
    lines = ["| model | batch | precision | predicted ratio | measured ratio (H200, 2026-11-26) | error |",
             "|---|---|---|---|---|---|"]
    errors = []
    for p, r in zip(pred, rows):
        errors.append(p - r["ratio_to_static"])
        prec = r["precision"] + (" channels_last" if r["channels_last"] else "")
        lines.append(f"| {r['model']} | {r['batch']} | {prec} | {p:.2f} | {r['ratio_to_static']:.2f} | "
                     f"{errors[-1]:+.2f} |")
    mae = sum(abs(e) for e in errors) / len(errors)
    return "\n".join(lines), mae


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder with paired_gpu.jsonl")
    ap.add_argument("--no-fit", action="store_true", help="print the table for the stored constants (FITTED)")
    ap.add_argument("--json", action="store_true", help="print the constants and rows as JSON instead")
    args = ap.parse_args(argv)
    rows = load_rows(args.data)
    if not rows:
        print(f"cost_model_fit: no ResNet-18 speed rows of our variants in {args.data / 'paired_gpu.jsonl'}",
              file=sys.stderr)
        return 2
    c = FITTED if args.no_fit else fit(rows)
    text, mae = table(rows, c)
    if args.json:
        pred = predicted(rows, c)
        print(json.dumps({"constants": c.__dict__, "mean_abs_error": mae, "rows": [
            {"model": r["model"], "batch": r["batch"], "precision": r["precision"],
             "channels_last": r["channels_last"], "predicted": p, "measured": r["ratio_to_static"]}
            for p, r in zip(pred, rows)]}, indent=1))
        return 0
    print("constants: " + ", ".join(f"{k}={v:.4g}" for k, v in c.__dict__.items()))
    print("predicted ratios (cost model) vs measured (H200, 2026-11-26):")
    print(text)
    print(f"mean absolute error {mae:.3f} over {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
