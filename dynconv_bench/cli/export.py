"""CLI subcommand `export`: write a deployed model as a checked ONNX file (a verb module of dynconv_bench.cli.main)."""

from __future__ import annotations

import argparse

from ..config_text import parse_config
from ..errors import UserError, unknown_choice
from .common import MAX_CLASSES, MAX_SIDE, bounded_int, check_output_file, command

EXPORT_FORMATS = ("onnx",)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the deployed model as ONNX, checked against eager with onnxruntime")
    p.add_argument("backbone", help="a backbone (see `backbones`) or any timm CNN name")
    p.add_argument("variant", help="a registered variant (see `variants`)")
    p.add_argument("config", nargs="*", help="variant config as key=value")
    p.add_argument("--format", default="onnx", help=f"one of: {', '.join(EXPORT_FORMATS)}")
    p.add_argument("--output", "-o", required=True, help="file to write")
    p.add_argument("--num-classes", type=bounded_int(1, MAX_CLASSES), default=None,
                   help="classifier outputs (default: the backbone's own)")
    p.add_argument("--input-size", type=bounded_int(1, MAX_SIDE), default=None,
                   help="image side (default: the backbone's)")




@command
def cmd_export(args: argparse.Namespace) -> int:
    """Build, deploy, export and check; say ok only when onnxruntime matches eager at batch 1 and 4."""
    if args.format not in EXPORT_FORMATS:
        raise unknown_choice("export format", args.format, EXPORT_FORMATS)
    from ..files import check_not_input
    from ..metrics.export import TOLERANCE, export_checked, first_line, require_onnx
    from ..models.backbones import default_input_size, default_num_classes
    from ..models.convert import create_model, deploy
    from ..models.per_sample_conv import forced_strategy

    out = check_output_file(args.output, "ONNX file", "model.onnx")  # before the minutes of work
    check_not_input(out, [("plugin", f) for f in getattr(args, "plugin", None) or []], "ONNX file")
    forced_strategy()
    require_onnx()
    classes = args.num_classes or default_num_classes(args.backbone)
    model = deploy(create_model(args.backbone, args.variant, num_classes=classes, **parse_config(args.config)))
    size = default_input_size(args.backbone)
    if args.input_size:
        size = (size[0], args.input_size, args.input_size)
    try:
        info = export_checked(model, out, size)
    except UserError:  # the file could not be written (a full disk, ...): already one line
        raise
    except Exception as exc:  # the exporter's or the check's failure: one line, no file left behind
        print(f"dynconv-bench: export failed: {first_line(exc)}")
        return 1
    diffs = ", ".join(f"batch {b}: {d:.2g}" for b, d in info["max_abs_diff"].items())
    batch = "dynamic" if info["dynamic_batch"] else "static"
    print(f"ok: wrote {out} ({info['bytes'] / 2**20:.1f} MiB, {batch} batch); onnxruntime vs eager max abs diff "
          f"{diffs} (tolerance {TOLERANCE:g} of the largest output)")
    return 0
