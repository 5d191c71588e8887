"""Records: each measurement kind turns its stored result into (metric, value, unit, dims) records."""

from __future__ import annotations

from pathlib import Path

import pytest

import dynconv_bench
from dynconv_bench.measures import Record, list_kinds, metric_spec, records_of
from dynconv_bench.reporting.environments import threads_of

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cpu.sqlite"


def test_each_kind_gives_typed_records() -> None:
    params = records_of("params", {}, {"total": 2_500_000, "deployed": {"total": 1_000_000}})
    assert params == [Record("params", 2.5, "M"), Record("deployed_params", 1.0, "M")]
    macs = records_of("macs", {}, {"macs": 40_000_000, "overhead_macs": 400_000})
    assert [(r.metric, r.value, r.unit, r.compare) for r in macs] == [("macs", 40.0, "M", "ratio"),
                                                                       ("overhead", 1.0, "% MACs", "none")]
    speed = records_of("speed", {"device": "cuda", "precision": "bf16", "batch_size": 1, "channels_last": True},
                       {"throughput": 500.0, "latency_ms": 2.0})
    assert [(r.metric, r.label) for r in speed] == [("throughput", "infer cuda bf16 cl b1 (img/s)"),
                                                    ("latency", "latency cuda bf16 cl b1 (ms)")]
    assert speed[0].dim("batch_size") == 1 and speed[0].dim("mode") == "inference"
    train = records_of("speed", {"mode": "train", "batch_size": 64}, {"throughput": 300.0, "latency_ms": 200.0})
    assert [r.label for r in train] == ["train cpu b64 (img/s)"]  # no batch-1 latency of a training step
    mem = records_of("memory", {"mode": "train", "batch_size": 16}, {"peak_bytes": 3 * 2**20})
    assert mem == [Record("peak_memory", 3.0, "MiB", (("batch_size", 16), ("device", "cpu"), ("mode", "train")))]
    assert mem[0].label == "peak mem train b16 (MiB)"
    acc = records_of("accuracy", {"dataset": "digits", "seed": 2}, {"top1": 0.8, "num_classes": 1000})
    assert [(r.metric, r.value, r.label) for r in acc] == [("top1", 0.8, "top-1 digits (%)"),
                                                           ("chance", 0.1, "chance digits (%)")]
    assert acc[0].dim("seed") == 2 and acc[0].compare == "points"  # percent as stored, never rescaled


def test_layer_table_gives_one_record_per_layer() -> None:
    layers = records_of("layers", {"batch_size": 16}, {"layers": [
        {"layer": "conv1", "type": "Conv2d", "time_ms": 0.5, "calls": 1},
        {"layer": "fc", "type": "Linear", "time_ms": 0.25, "calls": 1}]})
    assert [(r.metric, r.value, r.unit, r.dim("layer"), r.dim("type"), r.dim("batch_size")) for r in layers] == [
        ("layer_time", 0.5, "ms", "conv1", "Conv2d", 16), ("layer_time", 0.25, "ms", "fc", "Linear", 16)]
    assert not any(metric_spec(r.metric).in_leaderboard for r in layers)


def test_missing_values_give_no_records() -> None:
    assert records_of("speed", {"batch_size": 1}, {"status": "failed", "throughput": None}) == []
    assert records_of("accuracy", {"dataset": "digits"}, {"top1": 50.0}) == [
        Record("top1", 50.0, "%", (("dataset", "digits"), ("seed", None)))]  # no num_classes: no chance level
    assert records_of("layers", {}, {"layers": []}) == [] and records_of("params", {}, None) == []
    assert records_of("unknown-kind", {}, {"total": 1}) == []
    assert threads_of({"threads": 2}, {"threads": 1}) == 1 and threads_of({"threads": 2}, {}) == 2
    assert threads_of(None, None) is None
    # a row edited outside dynconv-bench (the hostile-store property found a dict here): no thread count, no error
    assert threads_of({"threads": {"\x1b": None}}, {"threads": "2"}) is None and threads_of({}, {"threads": True}) is None


def test_column_order_cost_speed_memory_accuracy() -> None:
    recs = (records_of("accuracy", {"dataset": "d", "seed": 0}, {"top1": 1.0})
            + records_of("speed", {"mode": "train", "batch_size": 8}, {"throughput": 1.0})
            + records_of("speed", {"batch_size": 16}, {"throughput": 1.0})
            + records_of("speed", {"batch_size": 1}, {"throughput": 1.0, "latency_ms": 1.0})
            + records_of("params", {}, {"total": 1}))
    assert [r.label for r in sorted(recs, key=lambda r: r.order)] == [
        "params (M)", "latency cpu b1 (ms)", "infer cpu b1 (img/s)", "infer cpu b16 (img/s)", "train cpu b8 (img/s)",
        "top-1 d (%)"]


@pytest.mark.skipif(not RESULTS.is_file(), reason="no committed reference results")
def test_stored_rows_of_the_reference_results_stay_readable(tmp_path) -> None:  # noqa: ANN001
    import shutil

    from dynconv_bench.execution.store import ResultStore

    shutil.copy(RESULTS, tmp_path / "cpu.sqlite")  # even a read-only open of a WAL store writes files beside it
    with ResultStore(tmp_path / "cpu.sqlite", readonly=True) as store:
        rows = [r for r in store.rows(status="ok") if r["kind"] in list_kinds() and r["kind"] != "deploy"]
    assert rows
    for row in rows:
        assert records_of(row["kind"], row["options"], row["values"]), (row["kind"], row["options"])


# -- kinds: registry, typed results from real producers, a plugin kind installed by entry point ------------
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

from dynconv_bench.measures import get_kind  # noqa: E402
from dynconv_bench.models.modelspec import ModelSpec  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "measure-kinds.md"
QUICK_OPTIONS = {
    "params": {"num_classes": 10},
    "macs": {"num_classes": 10, "input_size": [3, 32, 32]},
    "speed": {"num_classes": 10, "input_size": [3, 32, 32], "batch_size": 2, "mode": "inference", "min_time": 0.0,
              "min_runs": 2, "warmup": 1},
    "layers": {"num_classes": 10, "input_size": [3, 32, 32], "repeats": 1},
    "accuracy": {"dataset": "digits", "seed": 0, "train_samples": 64, "epochs": 1,
                 "overrides": {"image_size": 8, "batch_size": 32}},
    "deploy": {"num_classes": 10, "input_size": [3, 32, 32], "targets": ["torchscript"], "min_time": 0.0},
}


def test_builtin_kinds_are_registered_cheap_first() -> None:
    assert list_kinds()[:7] == ["params", "macs", "speed", "memory", "accuracy", "layers", "deploy"]
    with pytest.raises(Exception, match="unknown measurement kind 'sped'"):
        get_kind("sped")


@pytest.mark.parametrize("kind", sorted(QUICK_OPTIONS))
def test_results_of_real_producers_round_trip_through_the_store_format(kind: str) -> None:
    """Every key a producer writes is a typed field (a renamed field lands in `extra` and fails here)."""
    cls = get_kind(kind)
    opts = cls.options(QUICK_OPTIONS[kind])
    variant = "static" if kind in ("accuracy", "deploy") else "condconv"  # the format, not the variant, is tested
    result = cls.measure(ModelSpec("cifar_resnet8", variant), opts)
    assert type(result) is cls.result and result.status == "ok", result.error
    assert result.extra == {}
    stored = json.loads(json.dumps(result.to_values(), default=str))
    back = cls.result.from_values(stored)
    assert back.extra == {} and json.dumps(back.to_values(), default=str) == json.dumps(stored, default=str)
    if kind != "deploy":  # deployability is a table of texts, not records
        assert records_of(kind, opts.as_dict(), stored)
    if cls.headline:
        assert cls.headline_of(stored) is not None


def _doc_example() -> str:
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


@pytest.fixture
def installed_param_bytes_kind(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """The docs' example kind installed as a package with a `dynconv_bench.measures` entry point."""
    from dynconv_bench.measures import base

    pkg = tmp_path / "my_kinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "param_bytes.py").write_text(_doc_example())
    dist = tmp_path / "my_kinds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-kinds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dynconv_bench.measures]\nparam_bytes = my_kinds.param_bytes\n")
    saved = (dict(base._KINDS), dict(base._METRICS))
    monkeypatch.syspath_prepend(str(tmp_path))
    base._KINDS.clear()
    base._METRICS.clear()
    monkeypatch.setattr(base, "_loaded", False)
    yield
    base._KINDS.clear()
    base._KINDS.update(saved[0])
    base._METRICS.clear()
    base._METRICS.update(saved[1])
    sys.modules.pop("my_kinds.param_bytes", None)
    sys.modules.pop("my_kinds", None)


def test_a_kind_installed_by_entry_point_runs_through_suite_store_and_leaderboard(installed_param_bytes_kind,
                                                                                    tmp_path) -> None:  # noqa: ANN001
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.suite import parse_suite
    from dynconv_bench.reporting.leaderboard import leaderboards
    from dynconv_bench.reporting.rows import load_results

    assert "param_bytes" in list_kinds()
    suite = parse_suite({"name": "pb", "backbones": ["cifar_resnet8"], "variants": ["static", "condconv"],
                         "measure": {"param_bytes": {"num_classes": 10}}})
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_suite(suite, store, progress=False)
        assert summary.failed == []
        df = load_results(store, "pb")
    (board,) = leaderboards(df).values()
    static_mib = board.loc["static", "weights (MiB)"]
    model = dynconv_bench.create_model("cifar_resnet8", "static", num_classes=10)
    expected = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20
    assert static_mib == pytest.approx(expected)
    assert board.loc["condconv", "weights (MiB)"] > static_mib


def test_speed_records_carry_the_in_cell_ratio_and_the_load_flag() -> None:
    base = {"throughput": 100.0, "latency_ms": 10.0, "rounds": 5, "baseline_ratio": 0.8, "cores": 2}
    busy = records_of("speed", {"batch_size": 1}, {**base, "load_avg": 2.6})
    idle = records_of("speed", {"batch_size": 1}, {**base, "load_avg": 2.2})  # the cell's own 2 threads, lagging
    assert {r.flags for r in busy} == {("load",)} and {r.flags for r in idle} == {()}
    assert {r.ratio for r in idle} == {0.8}  # latency's speed-up equals the throughput ratio
    alone = records_of("speed", {"batch_size": 16}, {"throughput": 100.0})
    assert [(r.ratio, r.flags) for r in alone] == [(None, ())]


def test_leaderboard_uses_in_cell_ratios_and_marks_loaded_rows() -> None:
    import pandas as pd

    from dynconv_bench.reporting.leaderboard import leaderboards
    from dynconv_bench.reporting.table_text import format_table

    env = {"host": "h"}
    rows = [{"id": i, "suite": "s", "backbone": "b", "variant": v, "kind": "speed", "status": "ok", "run_id": "r",
             "options": {"batch_size": 16}, "environment": env, "finished": "t",
             "values": {"throughput": tp, "rounds": 3, "baseline_ratio": ratio, "cores": 2, "load_avg": load}}
            for i, (v, tp, ratio, load) in enumerate([("static", 100.0, 1.0, 1.0), ("x", 50.0, 0.62, 3.0)])]
    board = leaderboards(pd.DataFrame(rows))["b"]
    assert board["infer cpu b16 (img/s) vs static"].tolist() == [1.0, 0.62]  # measured in-cell, not 50 / 100
    shown = format_table(board)
    # one consistent set: x's img/s is static's own 100 x its in-cell 0.62 (its own measured 50 is kept beside)
    assert shown.iloc[1, 0] == "62.0 (0.62x)!" and shown.iloc[0, 0] == "100 (ref; A/A 1.00)"
    assert board.loc["x", "infer cpu b16 (img/s) measured"] == 50.0


def test_an_interleaved_cell_counts_the_same_strategy_layers_as_a_cell_timed_alone() -> None:
    from dynconv_bench.models.per_sample_conv import use_strategy

    kind = get_kind("speed")
    opts = {"num_classes": 10, "input_size": [3, 32, 32], "batch_size": 2, "min_time": 0.0, "min_runs": 1,
            "warmup": 1, "threads": 1}
    with use_strategy("grouped"):
        alone = kind.measure(ModelSpec("cifar_resnet8", "condconv"), kind.options(opts))
        mixed = kind.measure(ModelSpec("cifar_resnet8", "condconv"), kind.options({**opts, "interleave": 3}))
    assert alone.strategies and mixed.strategies == alone.strategies
    assert mixed.rounds == 3 and mixed.baseline_ratio_min <= mixed.baseline_ratio <= mixed.baseline_ratio_max
