"""The runner and executors: skip done cells, --force, failures recorded, subprocess cells, kill and rerun, Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.cell import Cell
from dynconv_bench.execution.executors import LocalExecutor, make_executor, run_in_subprocess
from dynconv_bench.execution.executors_ray import RayExecutor
from dynconv_bench.execution.measure_cell import run_cell
from dynconv_bench.execution.runner import pending_cells, run_suite
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import parse_suite

from .child_calls import sleeps_past_any_timeout

SUITE = {"name": "t", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
         "measure": {"params": {}, "speed": {"batch_sizes": [1, 2]}}}


def fake_measure(cell: dict, plugins: tuple = ()) -> dict:
    """Params cells succeed; speed cells of static-se fail (module level: Ray pickles it)."""
    fail = cell["kind"] == "speed" and cell["variant"] == "static-se"
    return {"values": None if fail else {"n": cell["options"].get("batch_size", 0)},
            "status": "failed" if fail else "ok", "error": "boom" if fail else None,
            "environment": {"host": "test"}, "started": None, "finished": None}


class Counting:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, cell: dict, plugins: tuple = ()) -> dict:
        self.seen.append(Cell.from_dict(cell).label())
        return fake_measure(cell, plugins)


def test_failures_recorded_run_goes_on_rerun_skips_ok(tmp_path) -> None:  # noqa: ANN001
    suite = parse_suite(SUITE)
    fn = Counting()
    with ResultStore(tmp_path / "r.sqlite") as store:
        s1 = run_suite(suite, store, executor=LocalExecutor(fn=fn), progress=False)
        assert (s1.total, s1.ran, s1.skipped) == (6, 6, 0)
        assert sorted(label for label, _ in s1.failed) == [
            "cifar_resnet8/static-se/speed[mode=inference,batch_size=1]",
            "cifar_resnet8/static-se/speed[mode=inference,batch_size=2]"]
        assert all(err == "boom" for _, err in s1.failed) and not s1.ok
        assert store.count() == 6 and len(store.rows(status="ok")) == 4
        fn.seen.clear()
        s2 = run_suite(suite, store, executor=LocalExecutor(fn=fn), progress=False)
        assert (s2.ran, s2.skipped) == (2, 4)  # only the failed cells are retried
        assert all("static-se/speed" in label for label in fn.seen)
        fn.seen.clear()
        s3 = run_suite(suite, store, force=True, executor=LocalExecutor(fn=fn), progress=False)
        assert (s3.ran, s3.skipped, len(fn.seen)) == (6, 0, 6)
        assert store.count() == 6  # one latest row per cell ...
        assert store.count(history=True) == 6 + 2 + 6  # ... and every run kept
        todo, skipped = pending_cells(suite, store, only=["params"])
        assert (len(todo), skipped) == (0, 2)


def test_real_params_cell_in_process_and_in_subprocess() -> None:
    cell = Cell("t", "cifar_resnet8", "static", "static", {"policy": "blocks"}, "params", {"num_classes": 10})
    here = run_cell(cell)
    assert here["status"] == "ok", here["error"]
    import timm

    expected = sum(p.numel() for p in timm.create_model("cifar_resnet8", num_classes=10).parameters())
    assert here["values"]["total"] == expected and here["values"]["deployed"]["total"] == expected
    assert here["environment"]["torch"]
    there = run_in_subprocess(cell, timeout=300)
    assert there["status"] == "ok", there["error"]
    assert there["values"]["total"] == expected


def test_failing_cells_become_results() -> None:
    bad = Cell("t", "not_a_model", "static", "static", {}, "params", {})
    out = run_cell(bad)
    assert out["status"] == "failed" and "unknown backbone 'not_a_model'" in out["error"]
    assert out["values"] is None and out["finished"] >= out["started"]
    # the timeout counts from the child's imports; a cell that fails fast could beat it, so this one sleeps
    out = run_in_subprocess(bad, timeout=0.2, fn=sleeps_past_any_timeout)
    assert out["status"] == "failed" and out["error"].startswith("timed out after 0.2 s (the measurement alone")


def test_make_executor_rejects_unknown_name() -> None:
    with pytest.raises(UserError, match="unknown executor 'dask'; valid: local, ray"):
        make_executor("dask")


SLOW_PLUGIN = '''
import os, time
from dynconv_bench import Param, Variant, register_variant

for i in range(4):
    @register_variant
    class Slow(Variant):
        name = f"slow{i}"
        params = {"policy": Param("blocks", type=str)}
        def convert_conv(self, site):
            time.sleep(float(os.environ.get("SLOW_PLUGIN_SLEEP", "0.25")))
            return None
'''


@pytest.mark.slow  # two CLI processes: ~15 s on an idle 2-core machine
def test_kill_mid_run_keeps_finished_rows_and_rerun_completes(tmp_path) -> None:  # noqa: ANN001
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(SLOW_PLUGIN)
    suite = tmp_path / "k.toml"
    suite.write_text('name = "k"\nbackbones = ["cifar_resnet8"]\nvariants = ["slow0", "slow1", "slow2", "slow3"]\n'
                     "[measure.params]\n")
    db = tmp_path / "k.sqlite"
    cmd = [sys.executable, "-c", "from dynconv_bench.cli.main import main; raise SystemExit(main())",
           "--plugin", str(plugin), "--db", str(db), "run", str(suite), "--no-plots", "--no-progress"]
    env = {**os.environ, "SLOW_PLUGIN_SLEEP": "0.6", "PYTHONWARNINGS": "ignore"}  # 6 convs: ~3.6 s per cell
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    rows: list = []
    while time.time() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    rows = conn.execute("SELECT variant, finished FROM results WHERE status='ok'").fetchall()
            except sqlite3.OperationalError:
                rows = []
        if rows:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= len(rows) < 4, "the run must be killed between its first and last cell"
    with ResultStore(db) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = {(r["variant"], r["finished"]) for r in store.rows()}
        assert set(rows) <= before and all(r["status"] == "ok" for r in store.rows())
    env["SLOW_PLUGIN_SLEEP"] = "0"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{len(before)} already done" in out.stdout
    with ResultStore(db) as store:
        after = {(r["variant"], r["finished"]) for r in store.rows()}
        assert before <= after  # finished rows untouched
        assert {v for v, _ in after} == {"slow0", "slow1", "slow2", "slow3"} and store.count() == 4
        assert not store.rows(status="running", history=True)  # the killed run's claim was taken over


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_ray_executor_runs_cells_as_tasks(tmp_path) -> None:  # noqa: ANN001
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        suite = parse_suite(SUITE)
        with ResultStore(tmp_path / "r.sqlite") as store:
            summary = run_suite(suite, store, executor=RayExecutor(num_cpus=1, fn=fake_measure), progress=False)
            assert (summary.ran, len(summary.failed)) == (6, 2)
            rows = store.rows(status="ok")
            assert sorted(r["values"]["n"] for r in rows) == [0, 0, 1, 2]  # params x2, static speed b1 and b2
            real = Cell("t", "cifar_resnet8", "static", "static", {"policy": "blocks"}, "params", {"num_classes": 10})
            ((cell, result),) = list(RayExecutor(num_cpus=1).map([real]))
            assert result["status"] == "ok" and result["values"]["total"] > 0
            assert result["environment"]["host"]
    finally:
        ray.shutdown()


def test_suite_path_is_resolved(tmp_path, write_suite) -> None:  # noqa: ANN001
    path = write_suite()
    summary = run_suite(Path(path), tmp_path / "r.sqlite", executor=LocalExecutor(fn=fake_measure), progress=False)
    assert summary.suite == "tiny" and summary.ran == 2


def allocate(cell: dict, plugins: tuple = ()) -> dict:
    """Hold `batch_size` MiB, 64 MiB at a time (module level: a subprocess imports it).

    Blocks of 64 MiB are over glibc's largest mmap threshold (32 MiB): each is mapped on its own and unmapped
    when freed, so a failed cell gives all of it back and the next cell's headroom does not depend on the heap."""
    import torch

    mib = cell["options"]["batch_size"]
    blocks = [torch.ones(min(64, mib - i) * 2**18) for i in range(0, mib, 64)]
    return {"values": {"mib": sum(b.numel() for b in blocks) // 2**18}, "status": "ok", "error": None,
            "environment": {}, "started": None, "finished": None}


def test_memory_cap_fails_the_cell_and_the_run_goes_on(tmp_path) -> None:  # noqa: ANN001
    from dynconv_bench.execution.processes.limits import rss_bytes

    suite = parse_suite({**SUITE, "variants": ["static"], "measure": {"speed": {"batch_sizes": [3000, 16]}}})
    cap = rss_bytes() + 400 * 2**20
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_suite(suite, store, executor=LocalExecutor(fn=allocate), progress=False, memory_cap=cap)
        assert summary.ran == 2 and [label for label, _ in summary.failed] == [
            "cifar_resnet8/static/speed[mode=inference,batch_size=3000]"]
        assert summary.failed[0][1].startswith("memory cap exceeded: resident memory ")
        assert [r["values"] for r in store.rows(status="ok")] == [{"mib": 16}]
    assert rss_bytes() < cap  # the failed cell's memory was given back


@pytest.mark.slow  # two fresh interpreters: ~30 s on a busy 2-core machine
def test_memory_cap_kills_a_subprocess_worker() -> None:
    big = Cell("t", "cifar_resnet8", "static", "static", {}, "speed", {"batch_size": 3000})
    out = run_in_subprocess(big, memory_cap=1536 * 2**20, fn=allocate, timeout=300)  # killed by its own guard
    assert out["status"] == "failed" and "memory cap exceeded" in out["error"] and "> cap 1.50 GiB" in out["error"]
    small = run_in_subprocess(Cell("t", "cifar_resnet8", "static", "static", {}, "speed", {"batch_size": 16}),
                              memory_cap=1536 * 2**20, fn=allocate, timeout=300)
    assert small["status"] == "ok" and small["values"] == {"mib": 16}


def test_progress_off_a_terminal_is_plain_lines_with_eta(tmp_path) -> None:  # noqa: ANN001
    import io

    stream = io.StringIO()
    suite = parse_suite(SUITE)
    with ResultStore(tmp_path / "r.sqlite") as store:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        first = suite.cells()[0]
        store.claim(first, "old", owner=f"{os.uname().nodename}:{dead.pid}")  # a claim left by a killed run
        run_suite(suite, store, executor=LocalExecutor(fn=fake_measure), stream=stream)
        assert store.count() == 6 and first.key in store.done_keys("t")  # the dead run's claim was taken over
        assert store.rows(history=True)[0]["status"] == "failed"  # ... and closed as abandoned
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 6
    assert lines[0].startswith("[1/6] cifar_resnet8/static/params ok (") and "ETA" in lines[0]
    assert "FAILED: boom" in lines[4] and lines[-1].endswith("ETA 0:00)")


SPLIT_PLUGIN = SLOW_PLUGIN.replace("range(4)", "range(6)")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow  # a CLI process and its worker: ~20 s on an idle 2-core machine
def test_subprocess_worker_dies_with_its_parent(tmp_path) -> None:  # noqa: ANN001
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(SLOW_PLUGIN)
    suite = tmp_path / "k.toml"
    suite.write_text('name = "k"\nbackbones = ["cifar_resnet8"]\nvariants = ["slow0"]\n[measure.params]\n')
    cmd = [sys.executable, "-c", "from dynconv_bench.cli.main import main; raise SystemExit(main())", "--plugin",
           str(plugin), "--db", str(tmp_path / "k.sqlite"), "run", str(suite), "--no-plots", "--subprocess"]
    env = {**os.environ, "SLOW_PLUGIN_SLEEP": "30", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and not workers:
        workers = _children(proc.pid)
        time.sleep(0.2)
    assert workers, "the run never started its worker"
    time.sleep(3)  # the worker is now importing or measuring
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "the worker outlived its killed parent"


@pytest.mark.slow  # two CLI processes at once: ~30 s on an idle 2-core machine
def test_concurrent_runs_split_the_cells(tmp_path) -> None:  # noqa: ANN001
    plugin = tmp_path / "split_plugin.py"
    plugin.write_text(SPLIT_PLUGIN)
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\nbackbones = ["cifar_resnet8"]\nvariants = ["slow0", "slow1", "slow2", "slow3", '
                     '"slow4", "slow5"]\n[measure.params]\n')
    db = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-c", "from dynconv_bench.cli.main import main; raise SystemExit(main())", "--plugin",
           str(plugin), "--db", str(db), "run", str(suite), "--no-plots", "--no-progress"]
    env = {**os.environ, "SLOW_PLUGIN_SLEEP": "0.5", "PYTHONWARNINGS": "ignore"}  # ~3 s per cell
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with ResultStore(db) as store:
        rows = store.rows(history=True)
        assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)  # every cell measured exactly once
        by_run = {r["run_id"] for r in rows}
        assert len(by_run) == 2, "both runs must have measured cells"
        assert all(r["environment"].get("concurrent_runs") for r in rows[:2])  # both were running then
    # each run's summary says which cells it left to the other run and that the other run finished them
    counts = [re.search(r"6 cells, (\d+) run, 0 already done, 0 failed, (\d+) left to another run", out)
              for out, _ in outs]
    assert all(counts), outs
    ran, left = [int(c[1]) for c in counts], [int(c[2]) for c in counts]
    assert sum(ran) == 6 and [r + n for r, n in zip(ran, left)] == [6, 6]
    for (out, _), n in zip(outs, left):
        lines = [ln for ln in out.splitlines() if ln.startswith("  left ")]
        # the run that ends first may see the other still at work on its last cell
        assert len(lines) == n and all(re.fullmatch(r"  left cifar_resnet8/slow\d/params to (?:run \S+|another run): "
                                                    r"(?:finished|still measuring it \(last heartbeat \d+ s ago\))", ln)
                                       for ln in lines), lines


@pytest.mark.slow  # a fresh interpreter: ~10 s
def test_a_cells_own_subprocess_gets_what_is_left_of_its_cap() -> None:
    from dynconv_bench.execution.processes.isolate import run_isolated
    from dynconv_bench.execution.processes.limits import MemoryGuard, rss_bytes
    from dynconv_bench.metrics.step_memory import peak_memory

    with MemoryGuard(rss_bytes() + 64 * 2**20) as guard:  # a fresh interpreter alone needs more than 64 MiB
        out = run_isolated(peak_memory, "cifar_resnet8", batch_size=1, input_size=(3, 32, 32), num_classes=10)
    assert guard.error is None  # this process stayed under the cap; its child did not
    assert out["status"] == "failed" and out["error"].startswith("memory cap exceeded: resident memory ")


def test_tuned_strategies_are_kept_beside_the_store(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.runner import strategy_cache_path
    from dynconv_bench.models.per_sample_conv import CACHE_ENV, clear_strategy_cache

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("DYNCONV_BENCH_STRATEGY", raising=False)
    monkeypatch.setattr("dynconv_bench.models.per_sample_conv._CACHE_FILE", [])  # no override by an earlier test
    clear_strategy_cache()
    suite = parse_suite({"name": "t", "backbones": ["cifar_resnet8"], "variants": ["condconv"],
                         "measure": {"speed": {"batch_sizes": [4], "min_time": 0.01, "min_runs": 1, "warmup": 0,
                                               "processes": 0}}})
    db = tmp_path / "r.sqlite"
    summary = run_suite(suite, db, progress=False)
    assert summary.ran == 1 and not summary.failed
    cache = strategy_cache_path(db)
    assert cache == tmp_path / "r.sqlite.strategies.json"
    choices = json.loads(cache.read_text())["choices"]
    assert choices and all("|" in k and v in ("grouped", "loop", "bmm", "output_space") for k, v in choices.items())
    assert CACHE_ENV not in os.environ  # set for the run only
