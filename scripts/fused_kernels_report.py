"""Compile every configuration the fused-conv launcher picks for the built-in variants, and write the report.

For ResNet-18/50 and MobileNetV2 (224x224) x every built-in variant, the launcher's configurations at batch 1
and 128, in fp32 (TF32 and IEEE), bf16 and fp16, for sm_80 and sm_90, are compiled with Triton's own compiler and
bundled ptxas (no GPU needed). Writes docs/fused-kernels.json (one row per configuration: constexprs, tiles,
and per architecture registers, spills, shared memory, the shared-memory model's bound, occupancy in CTAs per SM,
main-loop instructions, which models use it; the targets' limits) and the summary table in docs/fused-kernels.md
between its markers.
Run: python scripts/fused_kernels_report.py [--backbones resnet18,...]   (several minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
from pathlib import Path

import triton
from dynconv_bench_variants._speed_configs import VARIANTS

from dynconv_bench.files import write_atomic
from dynconv_bench.models.triton_aot import (
    ARCHS,
    BACKBONES,
    compile_report,
    family,
    launcher_configs,
    model_problems,
    precision_class,
    shared_bound,
)
from dynconv_bench.models.triton_tiles import TARGETS, ctas_per_sm

DOCS = Path(__file__).resolve().parents[1] / "docs"
START, END = "<!-- aot-table:start -->", "<!-- aot-table:end -->"


def collect(backbones: list[str]) -> dict[str, dict]:
    """compile key -> {'archs': set, 'used_by': set of 'backbone/variant'}."""
    out: dict[str, dict] = {}
    for backbone in backbones:
        for label, name, cfg in VARIANTS:
            problems = model_problems(backbone, name, cfg, BACKBONES[backbone])
            for key, archs in launcher_configs(problems).items():
                row = out.setdefault(key, {"archs": set(), "used_by": set()})
                row["archs"] |= archs
                row["used_by"].add(f"{backbone}/{label}")
    return out


def kernel_sha() -> str:
    """The kernel's source: a compile of other source is not reused (the tile table only picks the keys)."""
    from dynconv_bench.models import triton_kernel

    return hashlib.sha256(Path(triton_kernel.__file__).read_bytes()).hexdigest()[:16]


def _reusable(path: Path | None) -> dict[tuple[str, str], dict]:
    """(compile key, arch) -> resources from an earlier report of the same Triton version and kernel source."""
    if path is None or not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("triton") != triton.__version__ or old.get("kernel_sha") != kernel_sha():
        return {}
    keep = {}
    for row in old["configs"]:
        key = json.dumps({k: v for k, v in row.items() if k not in ("family", "used_by", "archs")}, sort_keys=True)
        keep.update({(key, arch): res for arch, res in row["archs"].items()})
    return keep


def build(backbones: list[str], reuse: Path | None = None, partial: Path | None = None) -> dict:
    """The report; when stopped (SIGTERM, Ctrl-C) the rows compiled so far go to `partial` for a --reuse rerun."""
    prior = _reusable(reuse)
    rows: list[dict] = []
    try:
        _compile_rows(backbones, prior, rows)
    except (KeyboardInterrupt, SystemExit):
        if partial is not None:
            write_atomic(partial, json.dumps(_report(backbones, rows, complete=False), sort_keys=True) + "\n")
            print(f"\nstopped: {len(rows)} configurations kept in {partial} (rerun with --reuse)", file=sys.stderr)
        raise
    return _report(backbones, rows, complete=True)


def _report(backbones: list[str], rows: list[dict], complete: bool) -> dict:
    targets = {t.name: {"smem_block": t.smem_block, "smem_sm": t.smem_sm, "regs_sm": t.regs_sm,
                        "regs_thread": t.regs_thread, "ctas_sm": t.ctas_sm, "threads_sm": t.threads_sm,
                        "sms": t.sms} for t in TARGETS.values()}
    return {"triton": triton.__version__, "kernel_sha": kernel_sha(), "backbones": backbones,
            "archs": sorted(ARCHS), "batches": [1, 128], "complete": complete, "targets": targets, "configs": rows}


def occupancy(key: dict, arch: int, res: dict) -> dict:
    """What the limits say of a compiled configuration: the shared-memory model's bound (triton_tiles.shared_bytes)
    and the CTAs one SM holds with its registers and shared memory."""
    return {"shared_bound": shared_bound(key, arch),
            "ctas_per_sm": ctas_per_sm(TARGETS[arch], key["num_warps"], res["registers"], res["shared_bytes"])}


def _compile_rows(backbones: list[str], prior: dict, rows: list[dict]) -> None:
    for key_json, info in sorted(collect(backbones).items()):
        row = {**json.loads(key_json), "family": None, "used_by": sorted(info["used_by"]), "archs": {}}
        row["family"] = family(row)
        for arch in sorted(info["archs"]):
            res = prior.get((key_json, f"sm_{arch}"))
            if res is None:
                r = compile_report(key_json, arch)
                res = {"registers": r.registers, "spill_stores": r.spill_stores, "spill_loads": r.spill_loads,
                       "shared_bytes": r.shared_bytes, "instructions": r.instructions, "counts": r.counts}
            row["archs"][f"sm_{arch}"] = {**res, **occupancy(json.loads(key_json), arch, res)}
        rows.append(row)
        print(f"{len(rows)} configs", end="\r", file=sys.stderr, flush=True)


def summary(report: dict) -> str:
    """One line per (kernel family, precision): configurations, tiles, register range, spills, instructions; then
    every configuration that spills."""
    groups: dict[tuple, list[dict]] = {}
    for row in report["configs"]:
        groups.setdefault((row["family"], precision_class(row)), []).append(row)
    lines = ["| kernel | precision | configs | tiles BMxBNxBK | sm_80 regs | sm_80 max spill B | sm_80 max smem B | "
             "sm_80 CTAs/SM | sm_80 loop | sm_90 regs | sm_90 max spill B | sm_90 max smem B | sm_90 CTAs/SM | "
             "sm_90 loop |", "|---" * 14 + "|"]
    spilled = []
    for (fam, prec), rows in sorted(groups.items()):
        tiles = sorted({(r["BM"], r["BN"], r["BK"]) for r in rows}, reverse=True)
        cells = []
        for arch in ("sm_80", "sm_90"):
            res = [r["archs"][arch] for r in rows if arch in r["archs"]]
            regs = [x["registers"] for x in res]
            ctas = [x["ctas_per_sm"] for x in res]
            cells += [f"{min(regs)}-{max(regs)}", str(max(x["spill_stores"] for x in res)),
                      f"{max(x['shared_bytes'] for x in res):,}", f"{min(ctas)}-{max(ctas)}",
                      "/".join(sorted({x["instructions"] for x in res}))]
            spilled += [(arch, r) for r in rows if arch in r["archs"] and r["archs"][arch]["spill_stores"]]
        lines.append(f"| {fam} | {prec} | {len(rows)} | {', '.join('x'.join(map(str, t)) for t in tiles)} | "
                     f"{' | '.join(cells)} |")
    total = sum(len(r["archs"]) for r in report["configs"])
    limits = "; ".join(f"{name} {t['smem_block']:,} B per block" for name, t in sorted(report["targets"].items()))
    lines.append(f"\n{len(report['configs'])} configurations, {total} compiles (Triton {report['triton']}; "
                 f"{', '.join(report['backbones'])} x {len(VARIANTS)} variants, batch 1 and 128, kernel "
                 f"{report['kernel_sha']}). Spilling: {len(spilled) or 'none'}. Shared memory limits: {limits}.")
    for arch, r in sorted(spilled, key=lambda x: (x[0], x[1]["family"], precision_class(x[1]))):
        res = r["archs"][arch]
        lines.append(f"- {arch} {r['family']} {precision_class(r)} {r['KH']}x{r['KW']} tile {r['BM']}x{r['BN']}x"
                     f"{r['BK']}, {r['num_stages']} stages, out {r['out_dtype']}: {res['registers']} registers, "
                     f"{res['spill_stores']} B spilled ({', '.join(r['used_by'][:2])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated (default: all three)")
    ap.add_argument("--out", type=Path, default=DOCS / "fused-kernels.json")
    ap.add_argument("--md", type=Path, default=DOCS / "fused-kernels.md")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="an earlier report: its compiles are reused when Triton and the kernel source match")
    args = ap.parse_args(argv)
    backbones = [b for b in args.backbones.split(",") if b]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        ap.error(f"unknown backbone(s) {', '.join(unknown)}; valid: {', '.join(BACKBONES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))  # `timeout` stops it: keep what was compiled
    report = build(backbones, args.reuse, args.out.with_suffix(".partial.json"))
    write_atomic(args.out, json.dumps(report, indent=1, sort_keys=True) + "\n")
    text = args.md.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + summary(report) + "\n" + END + rest.split(END, 1)[1]
        write_atomic(args.md, text)
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
