"""Write the README's CPU speed table from a results store: the `cpu` suite's interleaved speed cells.

Every figure is read from the store (the runner measured it): per variant and batch size the median of the
per-process throughput ratios to static with their min-max (per round for one process), the strategies the per-sample convs ran with,
and when, where and under what load the cells ran.
Run: python scripts/readme_speed.py [--db results/cpu.sqlite] [--backbone resnet18] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynconv_bench.execution.store import ResultStore
from dynconv_bench.metrics.timing_result import SpeedResult
from dynconv_bench.reporting.marks import flag_marks

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"


def table(db: Path, suite: str, backbone: str) -> str:
    with ResultStore(db, readonly=True) as store:
        rows = [r for r in store.rows(suite=suite, kind="speed", status="ok")
                if r["backbone"] == backbone and r["options"].get("mode", "inference") == "inference"
                and r["values"].get("rounds")]
    if not rows:
        raise SystemExit(f"{db}: no interleaved inference speed cells of {backbone} in suite {suite}")
    batches = sorted({r["options"]["batch_size"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in sorted(rows, key=lambda r: (r["variant"] != "static",))))
    cells = {(r["variant"], r["options"]["batch_size"]): SpeedResult.from_values(r["values"]) for r in rows}
    out = ["| variant | " + " | ".join(f"b{b}" for b in batches) + " | strategies (layers) |",
           "|---|" + "---|" * (len(batches) + 1)]
    for v in variants:
        shown = []
        for b in batches:
            s = cells.get((v, b))
            low, high = s.process_range or (s.baseline_ratio_min, s.baseline_ratio_max) if s else (None, None)
            marks = flag_marks([s.flags]) if s else ""
            shown.append("-" if s is None else f"{s.baseline_ratio:.2f} ({low:.2f}-{high:.2f}){marks}")
        strategies = "; ".join(f"b{b}: " + ", ".join(f"{k} {n}" for k, n in cells[(v, b)].strategies.items())
                               for b in batches if (v, b) in cells and cells[(v, b)].strategies)
        out.append(f"| {v} | " + " | ".join(shown) + f" | {strategies or '-'} |")
    first = min(rows, key=lambda r: r["started"])
    env = first["environment"] or {}
    loads = [cells[k].load_avg for k in cells if cells[k].load_avg is not None]
    s0 = next(iter(cells.values()))
    out += ["", f"{backbone} {'x'.join(map(str, s0.input_size[1:]))}, CPU fp32, {s0.threads} threads, deployed forms; "
            + (f"throughput ratio to static: the median over {s0.processes} fresh worker processes, each timing "
               f"{s0.rounds} rounds round-robin with static, and the processes' min-max; "
               if s0.processes > 1 else f"throughput ratio to static, median over {s0.rounds} interleaved rounds "
                                        f"(min-max); ")
            + f"`!`: the 1-minute load average exceeded the {s0.cores} cores by more than half a core; `§`: the "
            f"processes' ratios vary with a standard deviation over 10% of their mean"
            + ("; `‡`: the runs waited (wall time above 1.5 x CPU time per thread)"
               if any("waited" in c.flags for c in cells.values()) else "") + ". Measured "
            f"{first['started'][:16]} - {max(r['finished'] for r in rows)[:16]} UTC by the runner "
            f"(run {first['run_id']}), commit {str(env.get('git_commit'))[:7]}, {env.get('cpu_model')}, "
            f"torch {env.get('torch')}; load average {min(loads):.1f}-{max(loads):.1f}."]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("results/cpu.sqlite"))
    ap.add_argument("--suite", default="cpu")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's table differs")
    args = ap.parse_args()
    text = README.read_text()
    i, j = text.index(START) + len(START), text.index(END)
    new = text[:i] + "\n" + table(args.db, args.suite, args.backbone) + "\n" + text[j:]
    if args.check:
        return int(new != text)
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
