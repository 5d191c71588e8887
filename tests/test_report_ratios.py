"""Every ratio in a report reads one way: the header says which way is better, latency is a speed-up; MACs say
which form they count; no `significant` without an interval; run comparisons are rounded with units."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.history import compare_runs, render_comparison
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.reporting.table_text import format_table

SUITE = {"name": "x", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
         "measure": {"params": {}, "macs": {}, "speed": {"batch_sizes": [1, 8]}, "accuracy": {"seeds": [0]}}}


def _fake(scale: float = 1.0):  # noqa: ANN202
    def measure(cell: dict, plugins: tuple = ()) -> dict:
        se, kind, o = cell["variant"] == "static-se", cell["kind"], cell["options"]
        values = {"params": {"total": int(scale * (1_250_000 if se else 1_000_000))},
                  "macs": {"macs": 40_400_000 if se else 40_000_000, "overhead_macs": 400_000 if se else 0},
                  "speed": {"throughput": (80.0 if se else 100.0) * o.get("batch_size", 1), "latency_ms": 12.5 if se else 10.0},
                  "accuracy": {"top1": 93.5 if se else 95.0, "num_classes": 10}}[kind]
        return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"},
                "started": None, "finished": None}
    return measure


@pytest.fixture
def rows(tmp_path) -> pd.DataFrame:  # noqa: ANN001
    run_suite(parse_suite(SUITE), tmp_path / "x.sqlite", executor=LocalExecutor(fn=_fake()), progress=False)
    return load_results(tmp_path / "x.sqlite", "x")


def test_latency_is_a_speed_up_and_every_ratio_header_says_which_way(rows: pd.DataFrame) -> None:
    board = leaderboards(rows)["cifar_resnet8"]
    assert board.loc["static-se", "latency cpu b1 (ms) speed-up vs static"] == pytest.approx(10.0 / 12.5)
    assert "latency cpu b1 (ms) vs static" not in board
    shown = format_table(board)
    assert list(shown.columns) == [
        "params (M), x: lower is better", "MACs trained form (M), x: lower is better", "overhead (% MACs)",
        "latency cpu b1 (ms), x: speed-up", "infer cpu b1 (img/s), x: higher is better",
        "infer cpu b8 (img/s), x: higher is better", "top-1 digits (%)", "top-1 digits (%) vs static (pts, 95% CI)"]
    assert shown.loc["static-se", "latency cpu b1 (ms), x: speed-up"] == "12.5 (0.80x)"  # slower: below 1
    assert shown.loc["static-se", "infer cpu b8 (img/s), x: higher is better"] == "640 (0.80x)"
    assert shown.loc["static-se", "params (M), x: lower is better"] == "1.25 (1.25x)"
    assert "speed-up (static's latency / the row's)" in render(rows, "md")


def test_csv_leaves_significant_blank_without_an_interval(rows: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(render(rows, "csv")), keep_default_na=False)
    assert csv["top-1 digits (%) vs static significant"].tolist() == ["", ""]  # n = 1 a side
    assert csv["top-1 digits (%) vs static (pts)"].tolist() == [0.0, -1.5]


def test_run_comparison_is_rounded_with_units(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite({**SUITE, "measure": {"params": {}, "speed": {"batch_sizes": [8]}}})
    db = tmp_path / "c.sqlite"
    for scale in (1.0, 1.1):
        run_suite(suite, db, executor=LocalExecutor(fn=_fake(scale)), progress=False, force=True)
    with ResultStore(db, readonly=True) as store:
        a, b = [r["run_id"] for r in store.runs()]  # oldest first
        df = compare_runs(store, a, b)
    params = df[df["cell"] == "cifar_resnet8/static-se/params"].iloc[0]
    assert (params["metric"], params["unit"], params["better"]) == ("params", "M", "lower")
    assert params["A"] == pytest.approx(1.25) and params["B"] == pytest.approx(1.375)
    md = render_comparison(df, a, b).splitlines()
    assert "| cifar_resnet8/static-se/params | params | 1.25 M | 1.38 M | 1.100x | lower |" in md
    assert "| cifar_resnet8/static/speed[batch_size=8,mode=inference] | throughput | 800 img/s | 800 img/s | 1.000x | higher |" in md
