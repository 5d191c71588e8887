"""Leaderboards: values and ratios vs static from stored rows; every export format."""

from __future__ import annotations

import io
import json
import statistics

import pandas as pd
import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.executors import LocalExecutor
from dynconv_bench.report import leaderboards, load_results, render, write_report
from dynconv_bench.runner import run_suite
from dynconv_bench.store import ResultStore
from dynconv_bench.suite import parse_suite

SUITE = {"name": "r", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static", "static-se"],
         "measure": {"params": {}, "macs": {}, "speed": {"backbones": ["cifar_resnet8"], "batch_sizes": [1, 8]},
                     "memory": {"backbones": ["cifar_resnet8"]},
                     "accuracy": {"backbones": ["cifar_resnet8"], "seeds": [0, 1, 2]}}}
PARAMS = {"static": 1_000_000, "static-se": 1_250_000}
TOP1 = {("static", 0): 0.90, ("static", 1): 0.92, ("static", 2): 0.94,
        ("static-se", 0): 0.95, ("static-se", 1): 0.91, ("static-se", 2): 0.96}


def known_values(cell: dict, plugins: tuple = ()) -> dict:
    """Exact, made-up measurements so that every leaderboard entry can be checked."""
    v, kind, o = cell["variant"], cell["kind"], cell["options"]
    scale = 2 if cell["backbone"] == "resnet18" else 1
    values = {
        "params": {"total": PARAMS[v] * scale, "deployed": {"total": PARAMS[v] * scale}},
        "macs": {"macs": 40_000_000 * scale + (400_000 if v == "static-se" else 0),
                 "overhead_macs": 400_000 if v == "static-se" else 0},
        "speed": {"status": "ok", "throughput": (100.0 if v == "static" else 80.0) * o.get("batch_size", 1),
                  "latency_ms": 10.0 if v == "static" else 12.5},
        "memory": {"status": "ok", "peak_bytes": 2**20 * (10 if v == "static" else 15)},
        "accuracy": {"status": "ok", "top1": 100 * TOP1[(v, o.get("seed", 0))]},
    }[kind]
    failed = kind == "memory" and v == "static-se"
    return {"values": values, "status": "failed" if failed else "ok", "error": "out of memory" if failed else None,
            "environment": {"host": "box", "cpu_model": "Test CPU", "threads": 2, "torch": "2.x",
                            "git_commit": "0123456789abcdef", "git_dirty": False},
            "started": None, "finished": None}


@pytest.fixture
def results(tmp_path) -> pd.DataFrame:  # noqa: ANN001
    db = tmp_path / "r.sqlite"
    run_suite(parse_suite(SUITE), db, executor=LocalExecutor(fn=known_values), progress=False)
    return load_results(db, "r")


def test_leaderboard_values_and_ratios(results: pd.DataFrame) -> None:
    boards = leaderboards(results)
    assert list(boards) == ["cifar_resnet8", "resnet18"]
    b = boards["cifar_resnet8"]
    assert list(b.index) == ["static", "static-se"]
    assert b.loc["static-se", "params (M)"] == pytest.approx(1.25)
    assert b.loc["static-se", "params (M) vs static"] == pytest.approx(1.25)
    assert b.loc["static", "params (M) vs static"] == pytest.approx(1.0)
    assert b.loc["static-se", "MACs (M)"] == pytest.approx(40.4)
    assert b.loc["static-se", "overhead (% MACs)"] == pytest.approx(100 * 0.4 / 40.4)
    assert b.loc["static-se", "infer cpu b8 (img/s)"] == pytest.approx(640.0)
    assert b.loc["static-se", "infer cpu b8 (img/s) vs static"] == pytest.approx(0.8)
    assert b.loc["static-se", "latency cpu b1 (ms)"] == pytest.approx(12.5)
    assert b.loc["static", "peak mem inference b1 (MiB)"] == pytest.approx(10.0)
    assert pd.isna(b.loc["static-se", "peak mem inference b1 (MiB)"])  # its cell failed
    se = [100 * TOP1[("static-se", s)] for s in range(3)]
    st = [100 * TOP1[("static", s)] for s in range(3)]
    assert b.loc["static-se", "top-1 digits (%)"] == pytest.approx(statistics.mean(se))
    assert b.loc["static-se", "top-1 digits (%) std"] == pytest.approx(statistics.stdev(se))
    assert b.loc["static-se", "top-1 digits (%) n"] == 3
    assert b.loc["static-se", "top-1 digits (%) vs static (pts)"] == pytest.approx(
        statistics.mean(se) - statistics.mean(st))
    r18 = boards["resnet18"]
    assert r18.loc["static-se", "params (M)"] == pytest.approx(2.5) and "top-1 digits (%)" not in r18


def test_formats(results: pd.DataFrame, tmp_path) -> None:  # noqa: ANN001
    md = render(results, "md", "r")
    assert "## cifar_resnet8" in md and "| static-se" in md
    assert "94.00 ± 2.65 (n=3, +2.00)" in md  # static-se: mean and sample std of 95, 91, 96; static's mean is 92
    assert "| 1.25 (1.25x) " in md and "environment: host box, CPU Test CPU, threads 2, torch 2.x, commit 0123456789" in md
    assert "1 failed cell(s)" in md and "out of memory" in md
    csv = pd.read_csv(io.StringIO(render(results, "csv", "r")))
    assert set(csv["backbone"]) == {"cifar_resnet8", "resnet18"}
    row = csv[(csv["backbone"] == "cifar_resnet8") & (csv["variant"] == "static-se")].iloc[0]
    assert row["params (M)"] == pytest.approx(1.25)
    data = json.loads(render(results, "json", "r"))
    assert data["leaderboards"]["resnet18"][1]["variant"] == "static-se"
    assert data["failed"][0]["error"] == "out of memory"
    page = render(results, "html", "r")
    assert page.startswith("<!DOCTYPE html>") and "<table" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # self-contained
    paths = write_report(results, tmp_path / "out", suite="r")
    assert sorted(p.name for p in paths) == ["leaderboard.csv", "leaderboard.html", "leaderboard.json",
                                             "leaderboard.md"]
    with pytest.raises(UserError, match="unknown report format 'pdf'"):
        render(results, "pdf")


def test_load_results_errors(tmp_path, results: pd.DataFrame) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="results store not found"):
        load_results(tmp_path / "nothing.sqlite")
    with pytest.raises(UserError, match="unknown suite in the store 'x'; valid: r"):
        load_results(tmp_path / "r.sqlite", "x")
    ResultStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(UserError, match="holds no results yet"):
        load_results(tmp_path / "empty.sqlite", "r")
