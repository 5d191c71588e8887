"""A plugin kind with `timed = True` gets the load mark with no code of its own: the runner records the machine's
load around `measure()` and the report marks its cells `!` when the machine was loaded."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures import base
from dynconv_bench.measures.base import Kind, Metric, Result, record, register_kind
from dynconv_bench.measures.options import SELECT, MeasureOptions
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.reporting.table_text import format_table


class ColdOptions(MeasureOptions):
    params = {**SELECT}


@dataclass
class ColdResult(Result):
    seconds: float = 0.0


class ColdStart(Kind):
    name = "cold_start_test"
    options = ColdOptions
    result = ColdResult
    timed = True
    metrics = {"cold_start": Metric(lambda d, u: f"cold start ({u})", 50, higher_is_better=False, timed=True)}

    @classmethod
    def measure(cls, spec, opts):  # noqa: ANN001, ANN206
        return ColdResult(seconds=0.5 if spec.variant == "static" else 0.75)

    @classmethod
    def records(cls, options, result):  # noqa: ANN001, ANN206
        return record("cold_start", result.seconds, "s")


@pytest.fixture
def kind():  # noqa: ANN201
    register_kind(ColdStart)
    yield ColdStart
    base._KINDS.pop(ColdStart.name, None)
    base._METRICS.pop("cold_start", None)


@pytest.mark.parametrize("load, marked", [(9.0, True), (0.5, False)])
def test_a_timed_plugin_kind_is_marked_when_the_machine_was_loaded(kind, load, marked, tmp_path,  # noqa: ANN001
                                                                    monkeypatch) -> None:
    from dynconv_bench.metrics import timing

    monkeypatch.setattr(timing, "machine_load", lambda: {"load_avg": load, "cores": 2, "cpu_mhz": None})
    suite = parse_suite({"name": "c", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"cold_start_test": {}}})
    run_suite(suite, tmp_path / "c.sqlite", executor=LocalExecutor(), progress=False)
    df = load_results(tmp_path / "c.sqlite", "c")
    assert df["values"].map(lambda v: (v["load_avg"], v["cores"])).tolist() == [(load, 2)] * 2  # recorded
    shown = format_table(leaderboards(df)["cifar_resnet8"])
    assert shown["cold start (s), x: lower is better"].tolist() == (
        ["0.5 (1.00x)!", "0.75 (1.50x)!"] if marked else ["0.5 (1.00x)", "0.75 (1.50x)"])


def test_the_measure_kinds_page_covers_what_a_kind_author_asks() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "measure-kinds.md").read_text()
    for heading in ("## What `measure(spec, opts)` receives", "## Timed kinds and the load mark", "## Repeats",
                    "## Plots"):
        assert heading in page
    assert "tests/test_timed_kind.py" in page and "torch.set_num_threads(opts.threads)" in page
