"""What training a cell cost (issue 36, item on plugin training cost): every epoch of an accuracy row records its
wall time and peak memory, and the leaderboard shows seconds per epoch and the peak beside top-1, as measured
(never as a ratio to the baseline)."""

from __future__ import annotations

import sys

import pytest
import torch

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures import records_of
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.training.loop import EpochCost

ACCURACY = {"datasets": ["digits"], "seeds": [0], "train_samples": 64, "epochs": 2,
            "overrides": {"image_size": 8, "batch_size": 32}}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-epoch peak RSS reset is Linux's clear_refs")
def test_each_epoch_has_its_own_peak() -> None:
    cost = EpochCost("cpu")
    assert cost.method == "VmHWM"
    cost.start()
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    first = cost.stop()
    del big
    cost.start()
    second = cost.stop()
    assert first["epoch_time_s"] >= 0 and "peak_cuda_mib" not in first
    assert first["peak_rss_mib"] - second["peak_rss_mib"] > 48  # the mark was reset: epoch 2 did not inherit it


def test_a_tiny_accuracy_cell_records_cost_per_epoch_and_the_leaderboard_shows_it(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "c", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                         "measure": {"accuracy": ACCURACY}})
    run_suite(suite, tmp_path / "c.sqlite", executor=LocalExecutor(), progress=False)
    df = load_results(tmp_path / "c.sqlite", "c")
    assert (df["status"] == "ok").all()
    for values in df["values"]:
        history = values["history"]
        assert [e["epoch"] for e in history] == [1, 2]
        for entry in history:
            assert entry["epoch_time_s"] > 0 and entry["peak_rss_mib"] > 10
        assert history[1]["train_time_s"] == pytest.approx(history[0]["epoch_time_s"] + history[1]["epoch_time_s"],
                                                           rel=0.01)
        assert values["memory_method"] in ("VmHWM", "ru_maxrss")
        recs = {r.label: r for r in records_of("accuracy", {"dataset": "digits", "seed": 0}, values)}
        mean = sum(e["epoch_time_s"] for e in history) / 2
        assert recs["train s/epoch digits"].value == pytest.approx(mean)
        assert recs["train peak MiB digits (RSS)"].value == max(e["peak_rss_mib"] for e in history)
        assert {recs[k].compare for k in ("train s/epoch digits", "train peak MiB digits (RSS)")} == {"none"}
    table = leaderboards(df)["cifar_resnet8"]
    assert {"train s/epoch digits", "train peak MiB digits (RSS)"} <= set(table.columns)
    assert table["train s/epoch digits"].notna().all() and (table["train peak MiB digits (RSS)"] > 10).all()
    # shown as measured: no ratio to static, no speed-up, no in-cell timing columns
    assert not [c for c in table.columns if c.startswith("train ") and c not in (
        "train s/epoch digits", "train peak MiB digits (RSS)")]


def test_older_rows_give_seconds_per_epoch_from_the_total_and_no_peak() -> None:
    recs = records_of("accuracy", {"dataset": "digits", "seed": 1},
                      {"top1": 90.0, "epochs": 4, "train_time_s": 10.0, "history": [{"epoch": 4}]})
    assert [(r.label, r.value) for r in recs if r.metric.startswith("train_")] == [("train s/epoch digits", 2.5)]
    cuda = records_of("accuracy", {"dataset": "d", "seed": 0}, {"top1": 1.0, "epochs": 1, "history": [
        {"epoch": 1, "epoch_time_s": 3.0, "peak_rss_mib": 900.0, "peak_cuda_mib": 4400.0}]})
    assert [(r.label, r.value) for r in cuda if r.metric == "train_peak_mib"] == [("train peak MiB d (CUDA)", 4400.0)]
    published = records_of("accuracy", {"dataset": "imagefolder"},
                           {"top1": 70.0, "epochs": 0, "train_time_s": 5.0, "published": {"paper_top1": 71.0}})
    assert not [r for r in published if r.metric.startswith("train_")]  # evaluation time is not a training cost


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc/self/status")
def test_memory_freed_before_the_epoch_is_not_its_peak() -> None:
    """Pages an earlier cell freed but the C allocator kept resident are handed back at the epoch's start: without
    that, every cell trained after a bigger one in the same process showed the bigger one's peak (the smoke run's
    identical 1,162 MiB)."""
    from dynconv_bench.metrics.step_memory import status_kib

    blocks = [bytes(4000) for _ in range(50_000)]  # ~200 MiB through malloc (not Python's small-object arenas)
    keep = blocks[::10]  # live blocks between the freed ones: the heap cannot shrink from its top alone
    del blocks
    resident = status_kib("VmRSS") / 1024
    cost = EpochCost("cpu")
    cost.start()
    peak = cost.stop()["peak_rss_mib"]
    assert resident - peak > 100, (resident, peak)
    assert len(keep) == 5_000
