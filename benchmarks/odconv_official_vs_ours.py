"""Train the official ODConv layer and ours side by side: is a poor ODConv result the recipe's fault or ours?

Both layers go into the same backbone (cifar_resnet20, convs inside the residual blocks), start from the
same weights (ours are built, then loaded into the official model, and the outputs compared), and are
trained by the same loop with the same recipe, seeds, data and temperature schedule. Same curves: the
recipe is at fault; different curves: our layer is.

    python benchmarks/odconv_official_vs_ours.py --official /tmp/official/ODConv \
        [--schedules fast default] [--seeds 0] [--epochs 2] [--threads 1] [--json out.json]

--official: a checkout of github.com/OSVAI/ODConv (its modules/odconv.py is imported from there;
the file itself may be given too). A schedule is a name (fast: 30 -> 1 over the first 10% of the
run, the old default; default: this project's default, 30 -> 1 over 10 epochs and at least
200 iterations; constant30) or UNIT:LENGTH:MIN_ITERS (e.g. fraction:0.1:0, epoch:10:200) or
constant:T. The default recipe is the smoke suite's digits cell: digits-quick, 8x8 images, 2 epochs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from dynconv_bench_variants._temperature import TemperatureSchedule
from torch import nn

import dynconv_bench
from dynconv_bench import DynamicLayer, Param, Variant
from dynconv_bench.models.sites import ConvSite
from dynconv_bench.training import train_and_evaluate

NAMED = {
    "fast": TemperatureSchedule(30.0, "fraction", fraction=0.1, min_iters=0),
    "default": TemperatureSchedule(),
    "constant30": TemperatureSchedule.constant(30.0),
}


def parse_schedule(text: str) -> TemperatureSchedule:
    """A named schedule, `UNIT:LENGTH[:MIN_ITERS]` (start 30) or `constant:T`."""
    if text in NAMED:
        return NAMED[text]
    parts = text.split(":")
    try:
        if parts[0] == "constant" and len(parts) == 2:
            return TemperatureSchedule.constant(float(parts[1]))
        if parts[0] in ("epoch", "fraction") and len(parts) in (2, 3):
            floor = int(parts[2]) if len(parts) == 3 else 0
            length = float(parts[1])
            return TemperatureSchedule(30.0, parts[0], epochs=length, fraction=length, min_iters=floor)
    except ValueError:
        pass
    raise SystemExit(f"error: schedule {text!r}: use one of {', '.join(NAMED)}, UNIT:LENGTH[:MIN_ITERS] "
                     "(UNIT epoch or fraction) or constant:T")


def load_official(path: Path) -> Any:
    """The official modules/odconv.py, imported from `path` (a checkout or the file)."""
    file = path if path.is_file() else path / "modules" / "odconv.py"
    if not file.is_file():
        raise SystemExit(f"error: no official ODConv layer at {file} (give a checkout of OSVAI/ODConv)")
    spec = importlib.util.spec_from_file_location("official_odconv", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_variant(odconv: Any) -> type[Variant]:
    """A plugin variant whose layers are the official ODConv2d, told the temperature by our schedule."""

    class OfficialLayer(DynamicLayer, odconv.ODConv2d):
        def __init__(self, conv: nn.Conv2d, num_kernels: int, reduction: float, schedule: TemperatureSchedule) -> None:
            if conv.bias is not None or conv.kernel_size[0] != conv.kernel_size[1]:
                raise ValueError("the official ODConv2d takes square kernels without bias")
            super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride, conv.padding,
                             conv.dilation, conv.groups, reduction=reduction, kernel_num=num_kernels)
            self.schedule = schedule
            self.update_temperature(schedule.start)

        def set_progress(self, progress: float) -> None:
            self.update_temperature(self.schedule.at(progress))

    class OfficialODConv(Variant):
        name = "odconv-official"
        paper = "OSVAI/ODConv modules/odconv.py (imported from a path)"
        params = {"num_kernels": Param(4, min=1), "reduction": Param(0.0625, min=1e-6),
                  "schedule": Param(TemperatureSchedule(), type=TemperatureSchedule),
                  "policy": Param("blocks+head", type=str)}

        def convert_conv(self, site: ConvSite) -> nn.Module:
            c = self.cfg
            return OfficialLayer(site.conv, c["num_kernels"], c["reduction"], c["schedule"])

    return OfficialODConv


def build_pair(seed: int, schedule: TemperatureSchedule, official: type[Variant]) -> tuple[nn.Module, nn.Module, float]:
    """(ours, official) with identical weights, and the max abs output difference on one batch."""
    cfg = {"temperature": schedule.start, "anneal_unit": schedule.unit, "anneal_epochs": schedule.epochs,
           "anneal_fraction": schedule.fraction, "anneal_min_iters": schedule.min_iters}
    torch.manual_seed(seed)
    ours = dynconv_bench.create_model("cifar_resnet20", "odconv", num_classes=10, **cfg)
    theirs = dynconv_bench.create_model("cifar_resnet20", official(schedule=schedule), num_classes=10)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names: same initial weights
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    return ours.train(), theirs.train(), diff


def curve(result: dict[str, Any]) -> list[tuple[float, float, float | None]]:
    return [(h["train_loss"], h["train_top1"], h.get("test_top1")) for h in result["history"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, required=True, help="checkout of OSVAI/ODConv (or its modules/odconv.py)")
    p.add_argument("--schedules", nargs="+", default=["fast", "default"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--recipe", default="digits-quick")
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write every run's history here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    official = official_variant(load_official(args.official))
    schedules = {s: parse_schedule(s) for s in args.schedules}
    runs = []
    t0 = time.perf_counter()
    for label, schedule in schedules.items():
        for seed in args.seeds:
            ours, theirs, diff = build_pair(seed, schedule, official)
            res = {}
            for impl, model in (("ours", ours), ("official", theirs)):
                res[impl] = train_and_evaluate(model, "digits", args.recipe, seed=seed, epochs=args.epochs,
                                               image_size=args.image_size)
            runs.append({"schedule": label, "describe": schedule.describe(), "seed": seed, "init_max_abs_diff": diff,
                         **{k: {"top1": r["top1"], "status": r["status"], "error": r["error"],
                                "history": r["history"]} for k, r in res.items()}})
            print(f"\nschedule {label} ({schedule.describe()}), seed {seed}; outputs at init differ by {diff:.2e}")
            print(f"{'epoch':>5} | {'ours: loss':>10} {'train':>6} {'test':>6} | {'official: loss':>14} "
                  f"{'train':>6} {'test':>6}")
            for e, (a, b) in enumerate(zip(curve(res["ours"]), curve(res["official"])), 1):
                fa = f"{a[0]:10.4f} {a[1]:6.2f} {a[2] if a[2] is not None else float('nan'):6.2f}"
                fb = f"{b[0]:14.4f} {b[1]:6.2f} {b[2] if b[2] is not None else float('nan'):6.2f}"
                print(f"{e:>5} | {fa} | {fb}")
            for impl, r in res.items():
                if r["status"] != "ok":
                    print(f"  {impl} failed: {r['error']}")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s with {torch.get_num_threads()} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
