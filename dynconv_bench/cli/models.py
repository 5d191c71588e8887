"""CLI verbs `variants`, `backbones` and `convert`: what can be built, and what a conversion replaces."""

from __future__ import annotations

import argparse
import json
import sys

from ..config_text import parse_config
from .common import MAX_CLASSES, bounded_int, command

GPU_NAMES = ("h100", "h200", "a100", "l4")  # metrics.roofline.GPUS (not imported here: the CLI starts without torch)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("variants", help="list registered variants")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default) or json (every config key with type, default, range and help)")
    sub.add_parser("backbones", help="list standard backbones and registered architectures")
    p = sub.add_parser("convert", help="convert a backbone and list the replaced layers")
    p.add_argument("backbone", help="a backbone (see `backbones`) or any timm CNN name")
    p.add_argument("variant", help="a registered variant (see `variants`)")
    p.add_argument("config", nargs="*", help="variant config as key=value (preset=paper for a published one)")
    p.add_argument("--num-classes", type=bounded_int(1, MAX_CLASSES), default=None,
                   help="default: the backbone's own")
    p.add_argument("--roofline", metavar="GPU", choices=list(GPU_NAMES), default=None,
                   help=f"also print the cost model's predicted forward-time ratio to static on a GPU "
                        f"({', '.join(GPU_NAMES)}): a prediction, not a measurement")
    p.add_argument("--batch", type=bounded_int(1, 4096), default=128, help="batch size of the roofline (default 128)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="compute dtype of the roofline (fp32 with PyTorch's default TF32 switches)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default) or json: one object with the conversion and, with --roofline, the prediction")


@command
def cmd_variants(args: argparse.Namespace) -> int:
    """List registered variants: paper, every config key (type, default, range, help) and presets."""
    from ..models.registry import get_variant, installation_problems, list_variants

    for problem in installation_problems():
        sys.stderr.write(f"dynconv-bench: warning: {problem}\n")
    rows = [get_variant(n).describe() for n in list_variants()]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        year = f" ({row['year']})" if row["year"] and str(row["year"]) not in str(row["paper"]) else ""
        print(f"{row['name']}  {row['paper']}{year}")
        for key, p in row["params"].items():
            print(f"    {key:<16} {_param_summary(p)}")
        for preset, backbones in row["presets"].items():
            print(f"    preset={preset}: {', '.join(backbones)}")
    return 0


def _param_summary(p: dict) -> str:
    """`int = 4, >= 1: help text` for one config key."""
    text = f"{p['type']} = {p['default']!r}"
    if "choices" in p:
        text += f", one of {', '.join(map(str, p['choices']))}"
    bounds = [f">= {p['min']}" if "min" in p else "", f"<= {p['max']}" if "max" in p else ""]
    text += "".join(f", {b}" for b in bounds if b)
    return f"{text}: {p['help']}" if p["help"] else text


@command
def cmd_backbones(args: argparse.Namespace) -> int:
    """List the standard backbones and registered architectures."""
    from ..models.backbones import default_input_size, list_backbones

    for name in list_backbones():
        print(f"{name:<28} input {'x'.join(map(str, default_input_size(name)))}")
    print("(any other timm CNN name works too: see timm.list_models())")
    return 0


@command
def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a backbone with a variant and print which layers were replaced."""
    import torch

    from ..metrics.flops import profile
    from ..models.backbones import default_input_size
    from ..models.convert import create_model

    cfg = parse_config(args.config)  # may include preset=NAME
    model = create_model(args.backbone, args.variant, num_classes=args.num_classes, **cfg)
    report = model.dynconv_report
    size = default_input_size(args.backbone)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *size))
    params = sum(p.numel() for p in model.parameters())
    prof = profile(model, input_size=size)
    if args.format == "json":
        doc = {"backbone": args.backbone, "variant": args.variant, "config": cfg, "summary": report.summary(),
               "converted": list(report.converted), "params": params, "macs": prof.macs, "conv_macs": prof.conv_macs,
               "overhead_macs": prof.overhead_macs, "flops": prof.flops}
        if args.roofline:
            doc["roofline"] = _roofline_json(_roofline(args, cfg, size))
        print(json.dumps(doc, indent=1, default=str))
        return 0
    print(report.summary())
    for name in report.converted:
        print(f"  {name}")
    print(f"params {params:,}; output {tuple(out.shape)} for input {(2, *size)}")
    print(f"MACs per image {prof.macs:,} (conv {prof.conv_macs:,}, dynamic overhead {prof.overhead_macs:,}); "
          f"FLOPs {prof.flops:,}")
    if args.roofline:
        _print_roofline(args, _roofline(args, cfg, size))
    return 0


def _roofline(args: argparse.Namespace, cfg: dict, size: tuple[int, ...]):  # noqa: ANN202
    from ..metrics.roofline import predict_model

    return predict_model(args.backbone, args.variant, cfg, args.roofline, args.batch, args.dtype, size[1])


def _roofline_lines(pred) -> list[tuple[str, str]]:  # noqa: ANN001
    """(label, key) of each predicted line: best unfused per call, each strategy forced, fused."""
    return [("best unfused per layer" if k == "unfused" else k, k) for k in pred.times]


def _roofline_json(pred) -> dict:  # noqa: ANN001
    from ..metrics.roofline import FITTED, FITTED_ON

    return {"predicted": True, "model": "cost model (metrics/roofline.py), not a measurement",
            "gpu": pred.gpu.name, "batch": pred.batch, "dtype": pred.dtype, "channels_last": pred.channels_last,
            "mode": pred.mode, "static_ms": pred.static_s * 1e3, "picks": pred.picks,
            "strategies": {k: {"ms": pred.total_s(k) * 1e3, "ratio_to_static": pred.ratio(k)} for k in pred.times},
            "constants": FITTED.__dict__, "fitted_on": FITTED_ON}


def _print_roofline(args: argparse.Namespace, pred) -> None:  # noqa: ANN001
    """The cost model's predicted forward times and ratios to static, labelled as predictions."""
    layout = " channels_last" if pred.channels_last else ""
    print(f"predicted (roofline model, not measured) on {pred.gpu.name}, batch {args.batch} {args.dtype}{layout}, "
          f"whole forward, {pred.mode}: static {pred.static_s * 1e3:.3f} ms")
    if not pred.picks:
        print("  no layer runs a per-sample conv (the variant's own ops are counted below)")
    for label, key in _roofline_lines(pred):
        print(f"  {label:<24} {pred.total_s(key) * 1e3:8.3f} ms  predicted ratio to static {pred.ratio(key):.2f}")
    if pred.picks:
        print("  per-sample convs take: " + ", ".join(f"{s} x{n}" for s, n in sorted(pred.picks.items())))
