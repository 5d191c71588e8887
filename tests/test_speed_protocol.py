"""The speed protocol: fresh worker processes combined pyperf-style, CPU time beside wall time, the marks and
ranges a leaderboard shows, plots that order points as the tables do, worker deaths named by their signal."""

from __future__ import annotations

import dataclasses
import mmap
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.processes.isolate import death_text
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.measures import records_of
from dynconv_bench.metrics.timing_result import SPREAD_WARNING, SpeedResult, combine_processes
from dynconv_bench.reporting import plots, speed_figure
from dynconv_bench.reporting.leaderboard import leaderboards
from dynconv_bench.reporting.rows import load_results
from dynconv_bench.reporting.table_text import format_table


def _process(median_s: float, ratio: float, cpu_s: float = 0.01, load: float = 0.5, runs: int = 10) -> SpeedResult:
    return SpeedResult("ok", None, "inference", 4, [3, 32, 32], "cpu", 2, runs=runs, median_s=median_s,
                       iqr_s=median_s / 10, min_s=median_s * 0.9, max_s=median_s * 1.2, mean_s=median_s,
                       cpu_s=cpu_s, rounds=3, runs_per_round={"own": 3, "baseline": 4}, baseline_ratio=ratio,
                       baseline_ratio_min=ratio - 0.01, baseline_ratio_max=ratio + 0.01, load_avg=load, cores=2)


def test_processes_combine_to_the_median_of_their_medians_with_the_range_beside_it() -> None:
    out = combine_processes([_process(0.030, 0.60), _process(0.020, 0.64, load=3.1), _process(0.025, 0.61)])
    assert (out.processes, out.runs, out.median_s, out.baseline_ratio) == (3, 30, 0.025, 0.61)
    assert out.process_range == (0.60, 0.64) and out.process_medians_s == [0.030, 0.020, 0.025]
    assert (out.baseline_ratio_min, out.baseline_ratio_max) == (0.59, 0.65)  # over every round of every process
    assert out.throughput == 4 / 0.025 and out.latency_ms == 25.0 and out.load_avg == 3.1 and out.under_load
    assert out.spread_warning is None and not out.unsteady  # sd 0.021 / mean 0.617 = 3.4%, under 10%
    assert out.process_spread == pytest.approx(0.020817 / 0.616667, rel=1e-4)
    wide = combine_processes([_process(0.03, 0.40), _process(0.03, 0.64), _process(0.03, 0.61)])
    assert wide.unsteady and f"over {100 * SPREAD_WARNING:.0f}%" in wide.spread_warning  # sd 24% of the mean
    # five processes spread evenly: min-max 13% of the median, sd 5% of the mean: steady (a range grows with n)
    five = combine_processes([_process(0.03, r) for r in (0.60, 0.62, 0.64, 0.66, 0.68)])
    assert five.process_range == (0.60, 0.68) and not five.unsteady and five.spread_warning is None
    assert SpeedResult.from_values(wide.to_values()).unsteady  # a stored result is marked by its stored ratios
    failed = SpeedResult("failed", "boom")
    assert combine_processes([_process(0.03, 0.6), failed]) is failed


def test_stored_values_round_trip_and_records_carry_the_range_and_the_waited_flag() -> None:
    combined = combine_processes([_process(0.030, 0.60, cpu_s=0.04), _process(0.032, 0.66, cpu_s=0.04)])
    assert combined.median_s == 0.031 and combined.cpu_s == 0.04
    assert combined.waited  # 31 ms wall for 40 ms CPU on 2 threads: over 1.5 x 20 ms = 30 ms, it waited
    combined.median_s = 0.029  # 29 ms wall: under 30 ms, it worked
    assert not combined.waited
    combined.median_s = 0.031
    stored = combined.to_values()
    assert "times_s" not in stored and SpeedResult.from_values(stored).to_values() == stored
    (rec,) = records_of("speed", {"batch_size": 4}, stored)
    # processes without per-round ratios (older rows): the min-max of the per-process ratios, flagged as such
    assert rec.ratio == 0.63 and rec.ratio_range == (0.60, 0.66) and rec.flags == ("waited", "process-range")


def test_a_cell_whose_processes_disagree_is_marked_in_the_leaderboard() -> None:
    from dynconv_bench.reporting.marks import MARKS, mark_notes

    wide = combine_processes([_process(0.03, r, cpu_s=0.06) for r in (0.40, 0.46, 0.62)])  # worked, not waited
    assert wide.spread_warning
    (rec,) = records_of("speed", {"batch_size": 4}, wide.to_values())
    assert rec.flags == ("spread", "process-range") and rec.ratio_range == (0.40, 0.62)
    notes = mark_notes(pd.DataFrame({"infer": ["1.0 (0.46x, 0.40-0.62)§"]}))
    assert notes == [f"`§`: {MARKS['§']}."]


def _cells(cell: dict, plugins: tuple = ()) -> dict:
    """A store where static was measured under load: its absolute throughput is the lowest of all, while the
    in-cell ratios say every dynamic variant is slower than static."""
    v, b = cell["variant"], cell["options"].get("batch_size", 1)
    ratio = {"static": 1.03, "condconv": 0.48, "dyconv": 0.59, "kerneldna": 0.81}[v]
    absolute = {"static": 132.0, "condconv": 136.0, "dyconv": 134.0, "kerneldna": 142.0}[v] * b / 16
    values = {"accuracy": {"top1": {"static": 90.0, "condconv": 91.0, "dyconv": 92.0, "kerneldna": 93.0}[v]},
              "speed": {"throughput": absolute, "latency_ms": 1000 * b / absolute, "median_s": b / absolute,
                        "batch_size": b, "threads": 1, "cpu_s": b / absolute, "rounds": 3, "processes": 3,
                        "baseline_ratio": ratio, "process_ratios": [ratio - 0.02, ratio, ratio + 0.01],
                        "load_avg": 4.0 if v == "static" else 0.5, "cores": 2}}[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"}, "started": None,
            "finished": None}


def test_plots_order_points_as_the_table_does_with_a_loaded_static(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "p", "backbones": ["cifar_resnet8"],
                         "variants": ["static", "condconv", "dyconv", "kerneldna"],
                         "measure": {"speed": {"batch_sizes": [1, 16]}, "accuracy": {"seeds": [0]}}})
    run_suite(suite, tmp_path / "p.sqlite", executor=LocalExecutor(fn=_cells), progress=False)
    df = load_results(tmp_path / "p.sqlite", "p")
    table = leaderboards(df)["cifar_resnet8"]
    column = "infer cpu b16 (img/s) vs static"
    by_table = table[column].sort_values().index.tolist()
    assert by_table == ["condconv", "dyconv", "kerneldna", "static"] and table.loc["static", column] == 1.0
    shown = format_table(table)["infer cpu b16 (img/s), x: higher is better"]
    # static is the reference: its A/A ratio (1.03) with its range; condconv's img/s is 0.48 x static's 132
    assert shown["static"] == "132 (ref; A/A 1.03, 1.01-1.04)!" and shown["condconv"] == "63.4 (0.48x, 0.46-0.49)"

    drawn: dict[str, object] = {}
    monkeypatch.setattr(plots, "plot_tradeoff", lambda points, x_label, *a, **k: drawn.update(
        {x_label: points}) or [])
    figures = []
    monkeypatch.setattr(speed_figure, "save_figure", lambda fig, *a, **k: figures.append(fig) or [])
    plots.make_plots(df, tmp_path / "plots", "p")
    (label,) = [x for x in drawn if "speed vs static" in x]
    assert "measured in the same cell" in label
    points = drawn[label]
    assert points.sort_values("x").index.tolist() == ["condconv", "dyconv", "kerneldna", "static !"]
    assert points.loc["static !", "x"] == 1.0  # its own baseline; `!`: measured under load
    (fig,) = figures  # throughput vs batch: ratios per batch, static flat at 1
    ax = fig.axes[0]
    at16 = {line.get_label(): line.get_ydata()[-1] for line in ax.lines
            if not line.get_label().startswith("_")}  # not the error bars' caps
    assert sorted(at16, key=at16.get) == by_table and at16["static"] == 1.0
    assert "ratio measured in the same cell" in ax.get_ylabel()


@pytest.mark.parametrize("code, capped, expected", [
    (-signal.SIGSEGV, True, "was killed by signal 11 (SIGSEGV: segmentation fault)"),
    (-signal.SIGABRT, False, "was killed by signal 6 (SIGABRT: aborted)"),
    (-signal.SIGKILL, True, "was killed by signal 9 (SIGKILL: killed) (by another process: the memory watcher did "
                            "not see the cell's cap reached)"),
    (-signal.SIGKILL, False, "was killed by signal 9 (SIGKILL: killed)"),
    (3, True, "exited 3"),
])
def test_a_dead_worker_is_named_by_its_signal(code: int, capped: bool, expected: str, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.processes import isolate

    monkeypatch.setattr(isolate, "_memory_low", lambda: False)
    assert death_text(code, capped) == expected


def test_sigkill_without_a_cap_suggests_memory_only_when_memory_is_low(monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.processes import isolate

    monkeypatch.setattr(isolate, "available_memory", lambda: 10 * 2**30)
    monkeypatch.setattr(isolate, "machine_memory", lambda: 16 * 2**30)
    assert "memory" not in death_text(-signal.SIGKILL, capped=False)
    monkeypatch.setattr(isolate, "available_memory", lambda: 2**30)
    assert death_text(-signal.SIGKILL, capped=True).endswith("(the machine is low on memory: the kernel's OOM killer?)")


def segfault() -> dict:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return {}


def nap(seconds: float) -> dict:
    import time

    time.sleep(seconds)
    return {"status": "ok", "slept": seconds}


@pytest.mark.slow  # two fresh interpreters (each imports torch, timm and the variants first)
def test_worker_timeout_counts_the_call_not_the_start_up_and_a_segfault_says_so() -> None:
    from dynconv_bench.execution.processes.isolate import run_isolated

    assert run_isolated(nap, 0.5, timeout=2.0) == {"status": "ok", "slept": 0.5}  # start-up takes longer than 2 s
    out = run_isolated(segfault, memory_cap=None)
    assert out["status"] == "failed" and "(SIGSEGV: segmentation fault)" in out["error"]
    assert "out of memory" not in out["error"]


def test_reporting_imports_and_renders_a_store_without_torch() -> None:
    store = Path(__file__).resolve().parents[1] / "results" / "cpu.sqlite"
    code = ("import sys, dynconv_bench.reporting, dynconv_bench.reporting.plots\n"
            "from dynconv_bench.reporting.report import render\n"
            "from dynconv_bench.reporting.rows import load_results\n"
            "assert 'torch' not in sys.modules, 'import'\n"
            f"text = render(load_results({str(store)!r}, 'cpu'), 'md', 'cpu')\n"
            "assert 'condconv' in text and 'torch' not in sys.modules, 'render'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow  # 2 x 4 speed cells in fresh worker processes (~2 min on 2 cores)
def test_a_timed_cells_ratio_does_not_depend_on_the_cells_before_it(tmp_path) -> None:  # noqa: ANN001
    """The same speed cell alone and after params, MACs and big-batch speed cells in the same run: the ratios
    agree within the between-process ranges they store (with 0.05 of slack for a loaded test machine)."""
    speed = {"backbones": ["cifar_resnet8"], "batch_sizes": [1], "threads": 1, "warmup": 2, "min_time": 0.3,
             "interleave": 3, "processes": 3, "input_size": [3, 32, 32]}
    before = {"params": {}, "macs": {}, "speed": {**speed, "batch_sizes": [64, 1]}}
    ratios = []
    for name, measure in (("alone", {"speed": speed}), ("after", before)):
        suite = parse_suite({"name": name, "backbones": ["cifar_resnet8"], "variants": ["condconv"],
                             "measure": measure})
        summary = run_suite(suite, tmp_path / f"{name}.sqlite", progress=False)
        assert not summary.failed, summary.failed
        rows = load_results(tmp_path / f"{name}.sqlite", name)
        (values,) = [v for v, o in zip(rows["values"], rows["options"]) if v and o.get("batch_size") == 1
                     and "baseline_ratio" in v]
        ratios.append(SpeedResult.from_values(values))
    alone, after = ratios
    low = max(alone.process_range[0], after.process_range[0]) - 0.05
    high = min(alone.process_range[1], after.process_range[1]) + 0.05
    assert low <= high, (alone.process_ratios, after.process_ratios)  # the two ranges overlap


def _without_malloc_tunables(monkeypatch) -> None:  # noqa: ANN001
    for name in [k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)


class _TouchPages(torch.nn.Module):
    """Writes one byte into each page of a 32 MiB anonymous mapping per forward: a fresh mapping every forward
    (`fresh`: every page faulted in anew, as a forward whose buffers went back to the kernel) or one mapping made
    and touched once at construction (every page already resident). Same writes either way; huge pages off, so
    one fault is one page."""

    SIZE = 32 << 20

    def __init__(self, fresh: bool) -> None:
        super().__init__()
        self.fresh = fresh
        self.kept = None if fresh else self._touched()

    @classmethod
    def pages(cls) -> int:
        return cls.SIZE // mmap.PAGESIZE

    @classmethod
    def _touched(cls) -> mmap.mmap:
        m = mmap.mmap(-1, cls.SIZE)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        m[::mmap.PAGESIZE] = bytes(cls.pages())
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fresh:
            self._touched().close()
        else:
            self.kept[::mmap.PAGESIZE] = bytes(self.pages())
        return x


@pytest.mark.skipif(sys.platform != "linux", reason="minor faults per fresh page: Linux's accounting")
def test_a_forward_that_faults_in_fresh_pages_shows_them_per_run_and_in_the_kernels_share(monkeypatch) -> None:  # noqa: ANN001
    """The allocator-state fingerprint tells the two states apart: a forward that maps fresh pages each run
    (the swing's faulting state) shows about one minor fault per page per run and mostly system CPU time; the
    same writes into resident pages show almost none. Per run: not the total over the runs, not zero."""
    from dynconv_bench.metrics.paired_timing import measure_paired
    from dynconv_bench.metrics.timing import measure_inference

    _without_malloc_tunables(monkeypatch)
    monkeypatch.setenv("MALLOC_TOP_PAD_", "131072")  # read from the environment, as a worker started with it
    pages = _TouchPages.pages()
    fresh, resident = (measure_inference(_TouchPages(f), 1, (1,), threads=1, warmup=1, min_time=0.1, min_runs=4)
                       for f in (True, False))
    assert fresh.ok and resident.ok
    assert 0.9 * pages <= fresh.minor_faults_per_run <= 1.5 * pages, (fresh.minor_faults_per_run, pages)
    assert resident.minor_faults_per_run < 0.05 * pages, resident.minor_faults_per_run
    assert fresh.system_share > 0.5 and fresh.system_share > resident.system_share, (
        fresh.system_share, resident.system_share)
    assert fresh.major_faults is not None and resident.major_faults is not None  # counted (0 here: no file I/O)

    # round-robin with a baseline: the counts cover both models' runs, warm-ups included, in this process
    fixed = {"own": 2, "baseline": 2}  # 2 rounds x (2 + 2) runs + (1 warm-up + 1) x 2 = 12 runs, 6 of them fresh
    mixed, neither = (measure_paired(_TouchPages(f), _TouchPages(False), "inference", 1, (1,), rounds=2, threads=1,
                                     warmup=1, min_time=0.0, runs_per_round=fixed) for f in (True, False))
    assert mixed.ok and neither.ok
    assert 0.45 * pages <= mixed.minor_faults_per_run <= 0.75 * pages, (mixed.minor_faults_per_run, pages)
    assert neither.minor_faults_per_run < 0.05 * pages, neither.minor_faults_per_run
    for r in (fresh, resident, mixed, neither):
        assert SpeedResult.from_values(r.to_values()).minor_faults_per_run == r.minor_faults_per_run
        assert r.allocator == "MALLOC_TOP_PAD_=131072"  # the tunables the measuring process ran under


def test_processes_combine_their_fault_counts_as_medians_and_invent_none() -> None:
    both = combine_processes([_process(0.03, 0.6), _process(0.03, 0.62), _process(0.03, 0.61)])
    assert both.minor_faults_per_run is None  # not recorded by those processes: nothing invented
    counted = [dataclasses.replace(_process(0.03, 0.6), minor_faults_per_run=f, system_share=s, major_faults=m)
               for f, s, m in ((10.0, 0.01, 0), (4000.0, 0.25, 2), (12.0, 0.02, 1))]
    out = combine_processes(counted)
    assert (out.minor_faults_per_run, out.system_share, out.major_faults) == (12.0, 0.02, 3)


def test_malloc_tunables_make_their_own_environment_only_when_set(monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.metrics.env import allocator_settings, environment_key

    _without_malloc_tunables(monkeypatch)
    assert allocator_settings() is None
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "268435456")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "67108864")
    assert allocator_settings() == "MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456"
    plain = {"host": "h", "cpu_model": "c", "threads": 2, "gpu": None, "torch": "2", "timm": "1"}
    assert environment_key(plain) == environment_key({**plain, "allocator": None})  # old rows keep their key
    assert environment_key(plain) != environment_key({**plain, "allocator": allocator_settings()})


def test_timed_workers_start_with_steady_malloc_thresholds_unless_told_to_inherit(monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.errors import UserError
    from dynconv_bench.execution.processes.isolate import run_isolated
    from dynconv_bench.measures.speed import Speed, SpeedOptions

    from .child_calls import malloc_of_child

    _without_malloc_tunables(monkeypatch)
    steady = Speed.worker_environment(SpeedOptions(SpeedOptions.validate({}, "speed")))
    assert steady == {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}
    assert Speed.worker_environment(SpeedOptions(SpeedOptions.validate({"malloc": "inherit"}, "speed"))) == {}
    with pytest.raises(UserError, match="unknown malloc .tcmalloc.; valid: inherit, steady"):
        SpeedOptions.validate({"malloc": "tcmalloc"}, "speed")
    out = run_isolated(malloc_of_child, memory_cap=None, extra_env=steady)
    assert out["allocator"] == "MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456"
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ  # the runner's own environment is left as it was


def test_a_worker_killed_from_outside_is_not_called_out_of_memory(monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.processes import isolate
    from tests.child_calls import killed_by_sigkill

    monkeypatch.setattr(isolate, "_memory_low", lambda: False)
    out = isolate.run_isolated(killed_by_sigkill, memory_cap=2**33)
    assert out["status"] == "failed"
    assert "killed by signal 9" in out["error"] and "did not see the cell's cap reached" in out["error"]
    assert "out of memory" not in out["error"]
