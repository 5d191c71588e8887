"""One screen after scripts/gpu-check.sh: the GPU, the test tier's result, and the quick suite per variant.

Usage: python scripts/gpu_summary.py STORE.sqlite [PYTEST_LOG] [SUITE_SECONDS]
"""

from __future__ import annotations

import sys
from pathlib import Path

from dynconv_bench.execution.store import ResultStore
from dynconv_bench.measures import records_of

# (header, unit line, record label): b1 eager is what a PyTorch user gets, graph replay the GPU work alone
COLUMNS = [
    ("params", "M", "params (M)"),
    ("b1 eager", "ms", "latency cuda b1 (ms)"),
    ("b1 graph", "ms", "latency cuda graph b1 (ms)"),
    ("b128 fp32", "img/s", "infer cuda b128 (img/s)"),
    ("b128 bf16 cl", "img/s", "infer cuda bf16 cl b128 (img/s)"),
    ("mem b128", "MiB", "peak mem cuda inference b128 (MiB)"),
]
RATIO_TO_STATIC = ("b128 fp32", "b128 bf16 cl")


def _pytest_line(log: Path | None) -> str:
    if log is None or not log.is_file():
        return "GPU test tier: not run"
    lines = [ln.strip("= \n") for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    done = [ln for ln in lines if (" in " in ln and any(w in ln for w in ("passed", "failed", "error", "skipped")))
            or ln.startswith("stopped at the")]  # gpu-check.sh's note when its time limit ended the run
    return f"GPU test tier: {done[-1] if done else 'no result line (see ' + str(log) + ')'}"


def _cell(value: float | None, base: float | None, ratio: bool) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    return f"{text} ({value / base:.2f}x)" if ratio and base else text


def summary(store_path: Path, pytest_log: Path | None = None, seconds: str | None = None) -> str:
    """The summary text."""
    with ResultStore(store_path) as store:
        rows = store.rows()
    table: dict[str, dict[str, float]] = {}
    failed, env = [], {}
    for row in rows:
        env = row.get("environment") or env
        if row["status"] != "ok":
            failed.append(f"  FAILED {row['variant']} {row['kind']} {row['options']}: {(row['error'] or '')[:90]}")
            continue
        for rec in records_of(row["kind"], row["options"], row["values"]):
            table.setdefault(row["variant"], {})[rec.label] = rec.value
    gpu = f"{env.get('gpu')}, torch {env.get('torch')}, CUDA {env.get('cuda')}" if env else "no cells ran"
    took = f", {seconds} s" if seconds else ""
    out = [f"gpu-check summary: {gpu}", _pytest_line(pytest_log),
           f"quick suite: {len(rows) - len(failed)} cells ok, {len(failed)} failed{took} (store {store_path})", ""]
    width = max([7, *map(len, table)])
    out.append(f"{'variant':<{width}}" + "".join(f"{h:>14}" for h, _, _ in COLUMNS))
    out.append(" " * width + "".join(f"{u:>14}" for _, u, _ in COLUMNS))
    base = table.get("static", {})
    for variant, values in table.items():
        out.append(f"{variant:<{width}}" + "".join(
            f"{_cell(values.get(label), base.get(label), h in RATIO_TO_STATIC):>14}" for h, _, label in COLUMNS))
    out.append("b1 eager: CUDA events around each eager forward (Python and kernel launches included);")
    out.append("b1 graph: replays of one captured CUDA graph (the GPU work alone). (Nx): throughput / static.")
    return "\n".join(out + failed[:8] + ([f"  ... {len(failed) - 8} more"] if len(failed) > 8 else []))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: gpu_summary.py STORE.sqlite [PYTEST_LOG] [SUITE_SECONDS]", file=sys.stderr)
        sys.exit(2)
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    print(summary(Path(sys.argv[1]), log, sys.argv[3] if len(sys.argv) > 3 else None))
