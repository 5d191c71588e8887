"""The same speed cells in separate `run` invocations: do their ratios agree within the stored between-process ranges?

Runs `dynconv-bench run SUITE --only speed+BACKBONE+VARIANT` RUNS times, each into a fresh store, and once more
as `--only BACKBONE+VARIANT` (so params, MACs and the other kinds' cells run in the same suite first), then
prints per batch size each run's ratio to static with its range over the worker processes, and whether every
run's median lies inside every other run's range.

    flock /tmp/dynconv-cpu.lock python scripts/speed_agreement.py                  # cpu suite, resnet18 condconv
    python scripts/speed_agreement.py --suite cpu --backbone cifar_resnet20 --variant dyconv --runs 3
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


def _run(store: Path, suite: str, only: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dynconv_bench.cli.main", "--db", str(store), "run", suite, "--only", only,
                    "--no-plots", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


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
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            store = Path(tmp) / f"run{i + 1}.sqlite"
            took = _run(store, args.suite, f"speed+{args.backbone}+{args.variant}")
            results.append((f"run {i + 1} (speed only, {took:.0f} s)", _ratios(store, args.backbone, args.variant)))
        store = Path(tmp) / "after.sqlite"
        took = _run(store, args.suite, f"{args.backbone}+{args.variant}")
        results.append((f"after params/MACs/memory ({took:.0f} s)", _ratios(store, args.backbone, args.variant)))
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
