"""Records: each measurement kind turns its stored result into (metric, value, unit, dims) records."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynconv_bench.measures import Record, list_kinds, metric_spec, records_of
from dynconv_bench.reporting.report import threads_of

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
