"""Leaderboards: values and ratios vs static from stored rows; every export format."""

from __future__ import annotations

import io
import json
import statistics

import pandas as pd
import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.environments import environment_sections, environment_summary
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.report import render, write_report
from dynconv_bench.reporting.rows import load_results

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
    assert b.loc["static-se", "MACs trained form (M)"] == pytest.approx(40.4)
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
    assert b.loc["static", "top-1 digits (%) vs static (pts)"] == 0.0
    assert pd.isna(b.loc["static", "top-1 digits (%) vs static CI low"])  # no interval of the baseline to itself
    r18 = boards["resnet18"]
    assert r18.loc["static-se", "params (M)"] == pytest.approx(2.5) and "top-1 digits (%)" not in r18


def test_formats(results: pd.DataFrame, tmp_path) -> None:  # noqa: ANN001
    md = render(results, "md", "r")
    assert "## cifar_resnet8" in md and "| static-se" in md
    assert "94.00 ± 2.65 (n=3)" in md  # static-se: mean and sample std of 95, 91, 96
    assert "+2.00 [-3.48, +7.48] " in md  # static's mean is 92; the Welch interval is checked in test_welch_...
    assert "| 1.25 (1.25x) " in md
    assert "host box, CPU Test CPU, 2 torch threads by default, torch 2.x; commit 0123456" in md
    assert "1 failed cell(s)" in md and "out of memory" in md
    csv = pd.read_csv(io.StringIO(render(results, "csv", "r")))
    assert set(csv["backbone"]) == {"cifar_resnet8", "resnet18"}
    row = csv[(csv["backbone"] == "cifar_resnet8") & (csv["variant"] == "static-se")].iloc[0]
    assert row["params (M)"] == pytest.approx(1.25)
    data = json.loads(render(results, "json", "r"))
    assert data["leaderboards"]["resnet18"][1]["variant"] == "static-se"
    assert data["failed"][0]["error"] == "out of memory"
    # the failed cell is named as the runner names it: which batch and mode (for accuracy: which dataset and seed)
    assert data["failed"][0]["cell"] == "cifar_resnet8/static-se/memory[batch_size=1,mode=inference]"
    assert "cifar_resnet8/static-se/memory[batch_size=1,mode=inference" in md
    page = render(results, "html", "r")
    assert page.startswith("<!DOCTYPE html>") and "<table" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # self-contained
    paths = write_report(results, tmp_path / "out", suite="r")
    assert sorted(p.name for p in paths) == ["leaderboard.csv", "leaderboard.html", "leaderboard.json",
                                             "leaderboard.md", "leaderboard.tex"]
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


def _accuracy_store(tmp_path, top1: dict, environments: dict | None = None, seeds: tuple = (0,)) -> pd.DataFrame:  # noqa: ANN001
    """A store of accuracy cells with the given top-1 (percent) per (variant, seed), environment per variant."""
    def fake(cell: dict, plugins: tuple = ()) -> dict:
        v, o = cell["variant"], cell["options"]
        env = (environments or {}).get(v, {"host": "box", "cpu_model": "Test CPU", "threads": 2})
        values = {"status": "ok", "top1": top1[(v, o["seed"])], "num_classes": 1000, "threads": 1}
        return {"values": values, "status": "ok", "error": None, "environment": env,
                "started": None, "finished": None}

    suite = {"name": "a", "backbones": ["cifar_resnet8"], "variants": sorted({v for v, _ in top1}),
             "measure": {"accuracy": {"seeds": list(seeds)}}}
    run_suite(parse_suite(suite), tmp_path / "a.sqlite", executor=LocalExecutor(fn=fake), progress=False)
    return load_results(tmp_path / "a.sqlite", "a")


def _md_row(md: str, variant: str) -> list[str]:
    """The cells after the variant's name in its Markdown table row."""
    line = next(x for x in md.splitlines() if x.startswith(f"| {variant} "))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_top1_below_one_percent_is_shown_as_stored(tmp_path) -> None:  # noqa: ANN001
    # evaluate() returns percent: 0.8 means 0.8 % (near chance on 1000 classes), never 80 %
    df = _accuracy_store(tmp_path, {("static", 0): 0.8, ("static-se", 0): 95.0})
    board = leaderboards(df)["cifar_resnet8"]
    assert board.loc["static", "top-1 digits (%)"] == pytest.approx(0.8)
    assert "| 0.80 ± " in render(df, "md") and "80.00" not in render(df, "md")


def test_welch_interval_of_accuracy_difference(results: pd.DataFrame) -> None:
    b = leaderboards(results)["cifar_resnet8"]
    # by hand: static-se 95, 91, 96 (mean 94, var 7); static 90, 92, 94 (mean 92, var 4); n = 3 each
    # se^2 = 7/3 + 4/3 = 11/3; Welch df = (11/3)^2 / ((7/3)^2/2 + (4/3)^2/2) = 242/65 = 3.7231
    # t(0.975, 3.7231) = 2.85982 (scipy.stats.t.ppf; between the table's 3.182 at df 3 and 2.776 at df 4)
    half = 2.85982 * (11 / 3) ** 0.5
    assert b.loc["static-se", "top-1 digits (%) vs static CI low"] == pytest.approx(2.0 - half, abs=1e-4)
    assert b.loc["static-se", "top-1 digits (%) vs static CI high"] == pytest.approx(2.0 + half, abs=1e-4)
    assert not b.loc["static-se", "top-1 digits (%) vs static significant"]


def test_significant_difference_is_marked(tmp_path) -> None:  # noqa: ANN001
    # static-se 10, 11, 12 against static 1, 2, 3: diff 9, se^2 = 2/3, df 4, t(0.975, 4) = 2.7764 (table)
    top1 = {("static", 0): 1.0, ("static", 1): 2.0, ("static", 2): 3.0,
            ("static-se", 0): 10.0, ("static-se", 1): 11.0, ("static-se", 2): 12.0}
    md = render(_accuracy_store(tmp_path, top1, seeds=(0, 1, 2)), "md")
    half = 2.7764 * (2 / 3) ** 0.5
    assert _md_row(md, "static-se") == ["11.00 ± 1.00 (n=3)", f"+9.00 [{9 - half:+.2f}, {9 + half:+.2f}] *"]
    assert _md_row(md, "static") == ["2.00 ± 1.00 (n=3)†", "-"]  # 1000 classes: within 5 points of chance (0.1%)


def test_one_seed_has_no_std_and_no_interval(tmp_path) -> None:  # noqa: ANN001
    df = _accuracy_store(tmp_path, {("static", 0): 95.0, ("static-se", 0): 93.5})
    b = leaderboards(df)["cifar_resnet8"]
    assert pd.isna(b.loc["static", "top-1 digits (%) std"]) and b.loc["static", "top-1 digits (%) n"] == 1
    assert pd.isna(b.loc["static-se", "top-1 digits (%) vs static CI low"])
    md = render(df, "md")
    assert _md_row(md, "static") == ["95.00 ± - (n=1)", "-"]
    assert _md_row(md, "static-se") == ["93.50 ± - (n=1)", "-1.50"] and "± 0.00" not in md
    assert "Chance top-1 (100 / classes): digits 0.10%" in md


def test_footer_says_which_thread_count_is_which(tmp_path) -> None:  # noqa: ANN001
    df = _accuracy_store(tmp_path, {("static", 0): 95.0})
    line = environment_summary(df)
    assert "2 torch threads by default" in line  # the worker's default (environment)
    assert "cells ran with torch threads: accuracy 1" in line  # the cell's own (suite option)


def test_two_environments_are_never_mixed(tmp_path) -> None:  # noqa: ANN001
    fast = {"host": "a", "cpu_model": "CPU A", "threads": 2, "torch": "2.x"}
    slow = {"host": "b", "cpu_model": "CPU B", "threads": 2, "torch": "2.x"}
    envs = {"static": fast, "static-se": slow}  # static measured on one machine, static-se on another
    df = _accuracy_store(tmp_path, {("static", 0): 90.0, ("static-se", 0): 80.0}, envs)
    with pytest.raises(UserError, match=r"2 environments (?=.*host a, CPU CPU A)(?=.*host b, CPU CPU B)"):
        leaderboards(df)
    sections = environment_sections(df)
    assert [s.rows["variant"].unique().tolist() for s in sections] == [["static-se"], ["static"]]  # latest first
    md = render(df, "md")
    assert md.count("## Environment ") == 2 and "measured in 2 environments" in md
    assert "vs static (pts" not in md.split("## Environment ")[1]  # static-se's section has no static to compare
    data = json.loads(render(df, "json"))
    assert list(data["leaderboards"]["cifar_resnet8"][0].items())[:2] == [("variant", "static-se"),
                                                                        ("top-1 digits (%)", 80.0)]
    assert [r["variant"] for r in data["other_environments"][0]["leaderboards"]["cifar_resnet8"]] == ["static"]
    csv = pd.read_csv(io.StringIO(render(df, "csv")))
    assert csv.groupby("environment")["variant"].apply(list).to_dict() == {
        sections[0].environment_id: ["static-se"], sections[1].environment_id: ["static"]}
    # the git commit is not part of the key: the same machine at two commits is one environment
    same = {"static": {**fast, "git_commit": "aaa"}, "static-se": {**fast, "git_commit": "bbb"}}
    (tmp_path / "same").mkdir()
    df = _accuracy_store(tmp_path / "same", {("static", 0): 90.0, ("static-se", 0): 80.0}, same)
    assert leaderboards(df)["cifar_resnet8"].loc["static-se", "top-1 digits (%) vs static (pts)"] == -10.0
    assert "commits aaa, bbb" in environment_summary(df)
