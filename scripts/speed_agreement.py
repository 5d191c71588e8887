"""The same speed cell in separate `run` invocations: do their ratios agree within the stored between-process ranges?

Writes a suite holding SUITE's first inference speed table (its options as they are) for one backbone, variant
and batch size, runs it RUNS times, each into a fresh store, and once more with params and MACs cells before
the speed cell in the same run, then prints each run's ratio to static with its range over the worker
processes, and whether every run's median lies inside every other run's range.

    flock /tmp/dynconv-cpu.lock python scripts/speed_agreement.py            # cpu suite, resnet18 condconv b1
    python scripts/speed_agreement.py --suite cpu --backbone cifar_resnet20 --variant dyconv --batch 16
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib


def _run(store: Path, suite: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dynconv_bench.cli.main", "--db", str(store), "run", str(suite),
                    "--no-plots", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _suite(folder: Path, name: str, source: str, backbone: str, variant: str, batch: int, counts: bool,
           processes: int | None, malloc: str | None) -> Path:
    """A suite file with `source`'s first inference speed table at one batch size (and params + MACs first)."""
    from dynconv_bench.execution.suite import resolve_suite_path

    table = tomllib.loads(resolve_suite_path(source).read_text())
    speed = next(t for t in ([table["measure"]["speed"]] if isinstance(table["measure"]["speed"], dict)
                             else table["measure"]["speed"]) if "train" not in t.get("modes", []))
    options = {k: v for k, v in speed.items() if k not in ("backbones", "variants", "batch_sizes")}
    if processes is not None:
        options["processes"] = processes
    if malloc is not None:
        options["malloc"] = malloc
    lines = [f'name = "{name}"', f'backbones = ["{backbone}"]', f'variants = ["{variant}"]']
    if counts:
        lines += ["[measure.params]", "[measure.macs]"]
    lines += ["[[measure.speed]]", f"batch_sizes = [{batch}]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ratios(store: Path, backbone: str, variant: str) -> dict[tuple[str, int], tuple[float, float, float]]:
    rows = sqlite3.connect(store).execute(
        "SELECT options, \"values\" FROM results WHERE kind = 'speed' AND status = 'ok' AND backbone = ? AND variant = ?",
        (backbone, variant)).fetchall()
    out = {}
    for options, values in rows:
        o, v = json.loads(options), json.loads(values)
        ratios = v.get("process_ratios") or [v["baseline_ratio"]]
        out[(o.get("mode", "inference"), int(o["batch_size"]))] = (v["baseline_ratio"], min(ratios), max(ratios))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="cpu")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--variant", default="condconv")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", type=int, default=None, help="worker processes per cell (default: the suite's)")
    ap.add_argument("--malloc", choices=("steady", "inherit"), default=None,
                    help="glibc malloc in the workers (default: the suite's, else the speed kind's: steady)")
    args = ap.parse_args()
    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        alone = _suite(folder, "agreement", args.suite, args.backbone, args.variant, args.batch, counts=False,
                       processes=args.processes, malloc=args.malloc)
        after = _suite(folder, "agreement_after", args.suite, args.backbone, args.variant, args.batch, counts=True,
                       processes=args.processes, malloc=args.malloc)
        for i in range(args.runs):
            store = folder / f"run{i + 1}.sqlite"
            took = _run(store, alone)
            results.append((f"run {i + 1} (speed only, {took:.0f} s)", _ratios(store, args.backbone, args.variant)))
        store = folder / "after.sqlite"
        took = _run(store, after)
        results.append((f"after params and MACs cells ({took:.0f} s)", _ratios(store, args.backbone, args.variant)))
    cells = sorted({c for _, r in results for c in r})
    print(f"{args.backbone} {args.variant}: ratio to static (min-max over the worker processes), suite {args.suite}\n")
    print("| run | " + " | ".join(f"{m} b{b}" for m, b in cells) + " |")
    print("|---|" + "---|" * len(cells))
    for name, r in results:
        print(f"| {name} | " + " | ".join(f"{r[c][0]:.3f} ({r[c][1]:.3f}-{r[c][2]:.3f})" if c in r else "-"
                                         for c in cells) + " |")
    print()
    for c in cells:
        got = [r[c] for _, r in results if c in r]
        inside = all(lo <= med <= hi for med, _, _ in got for _, lo, hi in got)
        overlap = max(lo for _, lo, _ in got) <= min(hi for _, _, hi in got)
        print(f"{c[0]} b{c[1]}: every median inside every range: {'yes' if inside else 'no'}; "
              f"all ranges share a value: {'yes' if overlap else 'no'}")


if __name__ == "__main__":
    main()
