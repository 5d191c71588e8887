"""Issue 36 (items 2 and 3): speed columns that cannot contradict their ratios, intervals from every round of
every worker process, one strategy plan per cell, accuracy with few seeds shown as the seeds' range."""

from __future__ import annotations

import math
import random
import re
import statistics

import numpy as np
import pandas as pd
import pytest

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures import records_of
from dynconv_bench.metrics import timing_result
from dynconv_bench.metrics.timing_result import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    WIDTH_WARNING,
    SpeedResult,
    combine_processes,
    pooled_median,
    ratio_bootstrap,
)
from dynconv_bench.reporting.leaderboard import BASELINE, leaderboards
from dynconv_bench.reporting.marks import LEGACY_SPEED_NOTE, MARKS, SEEDS_NOTE, mark_notes
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.reporting.table_text import format_table


# -- the bootstrap against a hand computation and a plain re-implementation -------------------------------------
def _plain_bootstrap(groups: list[list[float]], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The hierarchical percentile bootstrap written out with loops (the draws as ratio_bootstrap documents)."""
    rng = np.random.default_rng(seed)
    p, width = len(groups), max(len(g) for g in groups)
    procs = rng.integers(0, p, size=(resamples, p))
    u = rng.random((resamples, p, width))
    medians = []
    for b in range(resamples):
        drawn = []
        for i in range(p):
            group = groups[procs[b, i]]
            drawn += [group[int(math.floor(u[b, i, j] * len(group)))] for j in range(len(group))]
        medians.append(statistics.median(drawn))
    medians.sort()

    def quantile(q: float) -> float:  # linear interpolation between order statistics (numpy's default)
        pos = q * (len(medians) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(medians) - 1)
        return medians[lo] + (medians[hi] - medians[lo]) * (pos - lo)
    return quantile((1 - level) / 2), quantile((1 + level) / 2)


def test_bootstrap_equals_a_plain_loop_with_the_same_seed() -> None:
    rnd = random.Random(3)
    groups = [[0.8 + 0.05 * rnd.random() for _ in range(5)], [0.7 + 0.1 * rnd.random() for _ in range(5)],
              [0.9 + 0.02 * rnd.random() for _ in range(4)]]  # one process with a round fewer
    got = ratio_bootstrap(groups, resamples=400)
    assert got == pytest.approx(_plain_bootstrap(groups, resamples=400), abs=1e-12)
    assert ratio_bootstrap(groups, resamples=400) == got  # fixed seed: the same rows give the same interval


def test_bootstrap_of_tiny_cases_computed_by_hand() -> None:
    # one process, one round: every resample is that round
    assert ratio_bootstrap([[0.8]]) == (0.8, 0.8)
    # identical rounds everywhere: no spread
    assert ratio_bootstrap([[0.5, 0.5], [0.5, 0.5, 0.5]]) == (0.5, 0.5)
    # two processes of one round, 1.0 and 2.0: a resample draws 2 processes with replacement, so its median is
    # 1.0 (p 1/4), 1.5 (p 1/2) or 2.0 (p 1/4); the 2.5% and 97.5% quantiles of that are 1.0 and 2.0
    assert ratio_bootstrap([[1.0], [2.0]]) == (1.0, 2.0)
    # three processes whose rounds are all alike within each: the same as bootstrapping three values, whose
    # medians are 1, 2 or 3 with 7/27, 13/27, 7/27: the ends are 1 and 3, and 2 is the point
    low, high = ratio_bootstrap([[1.0] * 4, [2.0] * 4, [3.0] * 4])
    assert (low, high) == (1.0, 3.0) and pooled_median([[1.0] * 4, [2.0] * 4, [3.0] * 4]) == 2.0


# -- combined results -------------------------------------------------------------------------------------
def _process(rounds: list[float], median_s: float = 0.03, strategies: dict | None = None,
             plan: dict | None = None) -> SpeedResult:
    return SpeedResult("ok", None, "inference", 4, [3, 32, 32], "cpu", 2, runs=10, median_s=median_s,
                       iqr_s=0.001, min_s=median_s, max_s=median_s, mean_s=median_s, cpu_s=0.05,
                       rounds=len(rounds), runs_per_round={"own": 2, "baseline": 2},
                       baseline_ratio=statistics.median(rounds), baseline_ratio_min=min(rounds),
                       baseline_ratio_max=max(rounds), round_ratios=[rounds], load_avg=0.5, cores=2,
                       strategies=strategies or {"grouped": 6}, strategy_plan=plan or {"k": "grouped"})


def test_a_combined_ratio_is_the_median_of_every_round_with_its_bootstrap_interval() -> None:
    rounds = [[0.80, 0.82, 0.81, 0.79, 0.83], [0.70, 0.71, 0.69, 0.72, 0.70], [0.81, 0.80, 0.82, 0.84, 0.80]]
    out = combine_processes([_process(r) for r in rounds])
    assert out.round_ratios == rounds and out.process_ratios == [0.81, 0.70, 0.81]
    assert out.baseline_ratio == statistics.median([x for r in rounds for x in r]) == 0.80
    assert out.interval_source == "bootstrap" and out.ratio_interval == ratio_bootstrap(rounds)
    low, high = out.ratio_interval
    assert low <= out.baseline_ratio <= high
    assert not out.unsteady and out.spread_warning is None  # (high - low) / 0.80 under 20%
    stored = out.to_values()
    back = SpeedResult.from_values(stored)
    assert back.round_ratios == rounds and back.ratio_interval == out.ratio_interval  # deterministic
    recs = records_of("speed", {"batch_size": 4}, stored)
    assert {(r.ratio, r.ratio_range, r.flags) for r in recs} == {(0.80, out.ratio_interval, ())}
    # a cell whose interval spans more than WIDTH_WARNING of its point carries `§` (the flag "spread")
    wide = combine_processes([_process(r) for r in ([0.5, 0.55, 0.5], [0.8, 0.85, 0.8], [0.65, 0.6, 0.7])])
    assert wide.interval_width > WIDTH_WARNING and wide.unsteady and "spans" in wide.spread_warning
    assert {r.flags for r in records_of("speed", {"batch_size": 4}, wide.to_values())} == {("spread",)}


def test_the_printed_interval_always_holds_the_point(monkeypatch: pytest.MonkeyPatch) -> None:
    out = combine_processes([_process([1.0, 1.0, 1.0]), _process([1.0, 1.2, 1.2])])
    monkeypatch.setattr(timing_result, "ratio_bootstrap", lambda groups: (1.1, 1.2))  # an interval past the point
    assert out.baseline_ratio == 1.0 and out.ratio_interval == (1.0, 1.2)


def test_workers_that_ran_different_strategies_are_named() -> None:
    same = combine_processes([_process([0.8]), _process([0.8])])
    assert same.strategies == {"grouped": 6} and same.strategy_plan == {"k": "grouped"} and not same.spread_warning
    other = combine_processes([_process([0.8]), _process([0.8], strategies={"bmm": 6})])
    assert "different per-sample conv strategies" in other.spread_warning


def test_rows_of_older_versions_keep_the_process_range_and_say_so() -> None:
    old = {"throughput": 100.0, "batch_size": 4, "rounds": 3, "processes": 3, "baseline_ratio": 0.62,
           "process_ratios": [0.60, 0.62, 0.70], "cores": 2}
    (rec,) = records_of("speed", {"batch_size": 4}, old)
    assert rec.ratio_range == (0.60, 0.70) and rec.flags == ("process-range",)
    assert SpeedResult.from_values(old).interval_source == "processes"


# -- the leaderboard: one consistent set of speed figures --------------------------------------------------
ROUNDS = 5


def _rounds(center: float, rnd: random.Random, noise: float) -> list[list[float]]:
    return [[round(center * (1 + noise * rnd.uniform(-1, 1)) + p * noise * center / 3, 4) for _ in range(ROUNDS)]
            for p in range(3)]


def _smoke_cell(cell: dict, plugins: tuple = ()) -> dict:
    """A speed store like the smoke run under load: each cell's absolute figures come from a different moment
    (static's own cell was slow), so the measured img/s contradict the in-cell ratios."""
    v, o = cell["variant"], cell["options"]
    b = o.get("batch_size", 1)
    ratio = {"static": 1.03, "static-se": 0.83, "condconv": 0.55, "kerneldna": 0.70}[v]
    measured = {"static": 346.0, "static-se": 535.0, "condconv": 300.0, "kerneldna": 410.0}[v] * b / 16
    rnd = random.Random(f"{cell['backbone']}/{v}/{b}")
    results = []
    for rounds in _rounds(ratio, rnd, 0.12 if v == "kerneldna" else 0.03):
        median_s = b / measured
        results.append(SpeedResult("ok", None, "inference", b, [3, 32, 32], "cpu", 2, runs=10, median_s=median_s,
                                   iqr_s=0.0, min_s=median_s, max_s=median_s, mean_s=median_s, cpu_s=median_s,
                                   rounds=ROUNDS, runs_per_round={"own": 2, "baseline": 2},
                                   baseline_ratio=statistics.median(rounds), baseline_ratio_min=min(rounds),
                                   baseline_ratio_max=max(rounds), round_ratios=[rounds], load_avg=1.0, cores=2))
    values = combine_processes(results).to_values()
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"}, "started": None,
            "finished": None}


CELL = re.compile(r"^(?P<value>[\d,.]+) \((?:(?P<ratio>[\d.]+)x|ref; A/A (?P<aa>[\d.]+))"
                  r"(?:, (?P<low>[\d.]+)-(?P<high>[\d.]+))?\)(?P<marks>[!~‡§]*)$")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    db = tmp_path_factory.mktemp("smoke") / "s.sqlite"
    suite = parse_suite({"name": "s", "backbones": ["cifar_resnet20", "resnet18"],
                         "variants": ["static", "static-se", "condconv", "kerneldna"],
                         "measure": {"speed": {"batch_sizes": [1, 16]}}})
    run_suite(suite, db, executor=LocalExecutor(fn=_smoke_cell), progress=False)
    return load_results(db, "s")


def test_speed_columns_sort_as_their_ratios_and_every_point_lies_in_its_interval(smoke: pd.DataFrame) -> None:
    boards = leaderboards(smoke)
    assert set(boards) == {"cifar_resnet20", "resnet18"}
    checked = 0
    for backbone, board in boards.items():
        shown = format_table(board)
        speed = [c for c in shown.columns if c.startswith(("infer", "latency"))]
        assert len(speed) == 3  # latency b1, img/s b1 and b16
        for col in speed:
            parsed = {}
            for variant, text in shown[col].items():
                m = CELL.match(text)
                assert m, (backbone, col, text)
                value = float(m["value"].replace(",", ""))
                point = float(m["aa"] if variant == BASELINE else m["ratio"])
                assert m["low"] and float(m["low"]) <= point <= float(m["high"]), (backbone, col, text)
                ratio = 1.0 if variant == BASELINE else point  # static is the reference
                assert (variant == BASELINE) == (m["aa"] is not None)
                parsed[variant] = (value, ratio)
            latency = col.startswith("latency")
            for a, (va, ra) in parsed.items():  # by value (lower latency first) and by ratio: one order
                for b, (vb, rb) in parsed.items():
                    if ra > rb:
                        assert (va <= vb) if latency else (va >= vb), (backbone, col, a, b, parsed)
            checked += 1
        # the measured values stay in the numeric table, beside the consistent ones
        col = "infer cpu b16 (img/s)"
        assert board.loc["static-se", f"{col} measured"] == pytest.approx(535.0)
        assert board.loc["static-se", col] == pytest.approx(346.0 * board.loc["static-se", f"{col} vs static"])
        assert board.loc["static", f"{col} vs static"] == 1.0
        assert board.loc["static", f"{col} vs static measured"] == pytest.approx(1.03, abs=0.05)  # its A/A
        assert set(board[f"{col} vs static interval"]) == {"95% bootstrap"}
    assert checked == 6


def test_the_legend_says_how_speed_figures_and_intervals_are_made(smoke: pd.DataFrame) -> None:
    md = render(smoke, "md")
    assert "img/s is static's measured throughput (its own cell) x the row's in-cell ratio" in md
    assert "hierarchical percentile bootstrap" in md and LEGACY_SPEED_NOTE not in md
    assert f"{100 * WIDTH_WARNING:.0f}% of the ratio" in MARKS["§"]
    row = next(line for line in md.splitlines() if line.startswith("| static "))
    assert "(ref; A/A " in row


def test_older_rows_fall_back_to_the_process_range_and_the_legend_says_so() -> None:
    env = {"host": "h"}
    rows = [{"id": i, "suite": "s", "backbone": "b", "variant": v, "kind": "speed", "status": "ok", "run_id": "r",
             "options": {"batch_size": 16}, "environment": env, "finished": "t",
             "values": {"throughput": tp, "rounds": 3, "processes": 3, "baseline_ratio": ratio,
                        "process_ratios": pr, "cores": 2, "load_avg": 1.0}}
            for i, (v, tp, ratio, pr) in enumerate([("static", 160.0, 1.07, [1.02, 1.07, 1.12]),
                                                    ("x", 50.0, 0.62, [0.60, 0.62, 0.70])])]
    shown = format_table(leaderboards(pd.DataFrame(rows))["b"])
    assert shown.iloc[:, 0].tolist() == ["160 (ref; A/A 1.07, 1.02-1.12)", "99.2 (0.62x, 0.60-0.70)"]
    assert LEGACY_SPEED_NOTE in mark_notes(shown)


# -- accuracy with fewer than 3 seeds ---------------------------------------------------------------------
def _accuracy(tmp_path, seeds: list[int]) -> pd.DataFrame:  # noqa: ANN001
    top1 = {"static": [96.0, 97.5, 96.8], "static-se": [98.9, 99.6, 99.1]}

    def fake(cell: dict, plugins: tuple = ()) -> dict:
        value = top1[cell["variant"]][cell["options"]["seed"]]
        return {"values": {"top1": value, "num_classes": 10}, "status": "ok", "error": None,
                "environment": {"host": "box"}, "started": None, "finished": None}
    suite = parse_suite({"name": "a", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"accuracy": {"seeds": seeds}}})
    run_suite(suite, tmp_path / "a.sqlite", executor=LocalExecutor(fn=fake), progress=False)
    return load_results(tmp_path / "a.sqlite", "a")


def test_two_seeds_show_the_seeds_range_not_a_t_interval(tmp_path) -> None:  # noqa: ANN001
    df = _accuracy(tmp_path, [0, 1])
    board = leaderboards(df)["cifar_resnet8"]
    vs = "top-1 digits (%) vs static"
    assert pd.isna(board.loc["static-se", f"{vs} CI low"]) and board.loc["static-se", f"{vs} significant"] is None
    # differences of every seed pair: 98.9 - 97.5 = 1.4 ... 99.6 - 96.0 = 3.6
    assert board.loc["static-se", f"{vs} seeds low"] == pytest.approx(1.4)
    assert board.loc["static-se", f"{vs} seeds high"] == pytest.approx(3.6)
    assert (board.loc["static-se", "top-1 digits (%) min"], board.loc["static-se", "top-1 digits (%) max"]) == (
        98.9, 99.6)
    shown = format_table(board)
    cell = shown.loc["static-se", "top-1 digits (%) vs static (pts, 95% CI)"]
    assert cell == "+2.50 (seed pairs +1.40 to +3.60)" and "*" not in cell  # 99.25 - 96.75
    assert SEEDS_NOTE.format(n=3) in mark_notes(shown) and SEEDS_NOTE.format(n=3) in render(df, "md")
    (tmp_path / "3").mkdir()
    three = format_table(leaderboards(_accuracy(tmp_path / "3", [0, 1, 2]))["cifar_resnet8"])
    assert re.fullmatch(r"\+\d\.\d\d \[[+-]\d\.\d\d, \+\d\.\d\d\]( \*)?",
                        three.loc["static-se", "top-1 digits (%) vs static (pts, 95% CI)"])
    assert SEEDS_NOTE.format(n=3) not in mark_notes(three)


# -- one strategy plan per cell: tuned by the first worker, run by the others --------------------------------
def test_the_first_workers_strategy_plan_is_run_by_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """A speed cell of cifar_resnet8/condconv in 2 worker processes (called in this process, with the in-memory
    strategy cache emptied before each, as a fresh interpreter starts): the first tunes every per-sample conv
    layer (the fake tuner picks 'loop'), the second receives that plan in its calibration and runs it without
    tuning (its tuner would pick 'bmm')."""
    from dynconv_bench.execution.processes import workers
    from dynconv_bench.execution.suite import parse_suite as parse
    from dynconv_bench.models import per_sample_conv as psc

    suite = parse({"name": "plan", "backbones": ["cifar_resnet8"], "variants": ["condconv"],
                   "measure": {"speed": {"batch_sizes": [4], "interleave": 2, "processes": 2, "threads": 1,
                                         "warmup": 1, "min_time": 0.0, "min_runs": 1}}})
    (cell,) = [c for c in suite.cells() if c.kind == "speed"]
    tuned: list[list[str]] = []
    calibrations: list[dict | None] = []
    picks = iter(["loop", "bmm"])

    def fresh_worker(fn, cell_dict, plugins, calibration, **kwargs):  # noqa: ANN001, ANN003, ANN202
        psc.clear_strategy_cache()  # a fresh interpreter has tuned nothing
        calibrations.append(calibration)
        tuned.append([])
        pick = next(picks)

        def tune(candidates, *args, layer="?", **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            tuned[-1].append(layer)
            return pick if pick in candidates else candidates[0]
        monkeypatch.setattr(psc, "_tune", tune)
        return fn(cell_dict, plugins, calibration)

    monkeypatch.setattr(workers, "run_isolated", fresh_worker)
    psc.set_strategy_cache(None)  # no cache file: a plan can only come through the calibration
    try:
        result = workers.measure_in_workers(cell, processes=2)
    finally:
        psc._CACHE_FILE.clear()
        psc.clear_strategy_cache()
    assert result.ok, result.error
    first_tuned, second_tuned = tuned
    assert first_tuned and second_tuned == []  # only the first worker tuned
    assert calibrations[0] is None and calibrations[1]["runs_per_round"]
    plan = calibrations[1]["strategy_plan"]
    assert set(plan) == set(first_tuned) and set(plan.values()) == {"loop"}
    assert result.processes == 2 and result.strategy_plan == plan  # recorded in the result
    assert set(result.strategies) == {"loop"}  # both workers ran 'loop' (else the warning names each's)
    assert "different per-sample conv strategies" not in (result.spread_warning or "")
    assert len(result.round_ratios) == 2 and all(len(r) == 2 for r in result.round_ratios)


def test_the_speed_figure_draws_the_tables_interval_as_error_bars(smoke: pd.DataFrame, tmp_path,  # noqa: ANN001
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.container import ErrorbarContainer

    from dynconv_bench.reporting import speed_figure
    from dynconv_bench.reporting.rows import metric_rows

    figures = []
    monkeypatch.setattr(speed_figure, "save_figure", lambda fig, *a, **k: figures.append((fig, a[3])) or [])
    speed_figure.plot_throughput_vs_batch(metric_rows(smoke), "resnet18", tmp_path, "env")
    ((fig, caption),) = figures
    board = leaderboards(smoke)["resnet18"]
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3 and "error bars: the interval the leaderboard prints" in caption  # static: no bar
    # each bar spans the printed interval at batch 16
    col = "infer cpu b16 (img/s) vs static"
    spans = sorted((round(s[0][1], 6), round(s[1][1], 6)) for c in bars for s in c.lines[2][0].get_segments()
                   if s[0][0] == 16)
    expected = sorted((round(board.loc[v, f"{col} low"], 6), round(board.loc[v, f"{col} high"], 6))
                      for v in ("static-se", "condconv", "kerneldna"))
    assert spans == expected
