"""Hostile inputs and concurrent runs (issue 20): one line and exit 2, foreign files untouched, caps that hold."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.execution.executors import LocalExecutor, run_guarded
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.store import ResultStore
from dynconv_bench.execution.suite import parse_suite

TINY = 'name = "tiny"\nbackbones = ["cifar_resnet8"]\nvariants = ["static", "static-se"]\n[measure.params]\n'


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture, *expected: str) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one stderr line holding every `expected` text."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("dynconv-bench: error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1. tracebacks -----------------------------------------------------------------------------
@pytest.mark.parametrize("cap", ["4i", "4ib", "2", "100", "1b", "63MiB", "0.0000001", "nan"])
def test_bad_memory_caps_are_one_line(cap: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run", "--memory-cap", cap],
                    capsys, "memory cap")
    suite.write_text(f'memory_cap = "{cap}"\n' + TINY)
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys, "memory_cap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_memory_cap_units() -> None:
    from dynconv_bench.execution.processes.limits import parse_memory_cap

    assert parse_memory_cap("4GiB") == 4 * 2**30 and parse_memory_cap("512 MB") == 512 * 10**6
    assert parse_memory_cap("1") == 1.0 and parse_memory_cap("50%") == 0.5 and parse_memory_cap(2**30) == 2**30
    assert parse_memory_cap("none") is None


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "0", "1e9", "soon"])
def test_bad_timeouts_are_one_line(value: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--subprocess", "--dry-run",
                     f"--timeout={value}"], capsys, "--timeout")


def _store(tmp_path: Path, suite: Path) -> Path:
    db = tmp_path / "r.sqlite"
    run_suite(parse_suite({"name": "tiny", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                           "measure": {"params": {}}}), db, progress=False)
    return db


@pytest.mark.parametrize("damage, message", [
    ("UPDATE meta SET value='abc' WHERE key='schema_version'", "meta.schema_version is 'abc'"),
    ("ALTER TABLE results DROP COLUMN heartbeat", "no column(s) heartbeat"),
])
def test_damaged_stores_are_one_line(damage: str, message: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    db = _store(tmp_path, suite)
    with sqlite3.connect(db) as conn:
        conn.execute(damage)
    conn.close()
    one_line_exit_2(["--db", str(db), "run", str(suite), "--no-progress", "--no-plots", "--force"], capsys, message)


def test_report_names_rows_with_malformed_json_and_reports_the_rest(tmp_path, capsys) -> None:  # noqa: ANN001
    db = _store(tmp_path, tmp_path / "tiny.toml")
    with sqlite3.connect(db) as conn:
        bad = conn.execute("SELECT id FROM results WHERE variant='static-se'").fetchone()[0]
        conn.execute('UPDATE results SET "values"=\'{"total": 1,\' WHERE id=?', (bad,))
    conn.close()
    assert main(["--db", str(db), "report"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"dynconv-bench: warning: left out 1 store row(s) that cannot be reported (malformed JSON, values "
                   f"of the wrong type or outside their valid range): id {bad}\n")
    assert "| static " in out and "static-se" not in out


def test_report_into_a_folder_is_refused(tmp_path, capsys) -> None:  # noqa: ANN001
    db = _store(tmp_path, tmp_path / "tiny.toml")
    (tmp_path / "out").mkdir()
    one_line_exit_2(["--db", str(db), "report", "-o", str(tmp_path / "out")], capsys, "is a directory")
    one_line_exit_2(["--db", str(db), "report", "--runs", "--suite", "nosuch"], capsys, "unknown suite in the store")
    (tmp_path / "afile").write_text("")
    one_line_exit_2(["--db", str(db), "plot", "--out-dir", str(tmp_path / "afile")], capsys, "is a file")


# -- 2 and 3. maxima and accepted nonsense ---------------------------------------------------------
@pytest.mark.parametrize("table, message", [
    ("[measure.macs]\nthreads = 100000", "threads=100000 is above the maximum"),
    ("[measure.speed]\nbatch_sizes = [1000000]", "batch_sizes must be integers in [1, 65536]"),
    ("[measure.speed]\ninput_size = 100000", "input_size [3, 100000, 100000] is too large"),
    ("[measure.speed]\nmin_time = 1e9", "min_time=1000000000.0 is above the maximum"),
    ("[measure.speed]\nmin_time = nan", "min_time=nan must be a finite number"),
    ("[measure.accuracy]\nseeds = [-1]", "seeds must be integers in [0, 4294967295]"),
    ("[measure.accuracy]\nepochs = 1000000", "epochs=1000000 is above the maximum"),
    ("[measure.accuracy]\noverrides = {batch_size = 100000000}", "batch_size must be an integer in [1, 65536]"),
    ("[measure.accuracy]\noverrides = {lr = \"fast\"}", "overrides"),
    ("[measure.params]\nnum_classes = 100000000", "num_classes=100000000 is above the maximum"),
])
def test_numeric_options_have_maxima(table: str, message: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "s.toml"
    suite.write_text('backbones = ["cifar_resnet8"]\nvariants = ["static"]\n' + table + "\n")
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys, message)


def test_train_threads_have_a_maximum(capsys) -> None:  # noqa: ANN001
    assert main(["train", "--backbone", "cifar_resnet8", "--dataset", "digits", "--threads", "100000"]) == 2
    assert "--threads must be an integer >= 1 and <= " in capsys.readouterr().err


@pytest.mark.parametrize("variants, message", [
    ('[{variant = "dyconv", config = {temperature = nan}}]', "temperature=nan must be a finite number"),
    ('[{variant = "dyconv", config = {temperature = inf}}]', "temperature=inf must be a finite number"),
    ('[{variant = "odconv", config = {policy = "re:(["}}]', "is not a valid regular expression"),
    ('[{variant = "odconv", config = {policy = "most"}}]', "unknown policy 'most'"),
    ('[{variant = "odconv", preset = "best"}]', "odconv: unknown preset 'best'; valid presets: paper, paper-4x"),
    ('[{variant = "odconv", config = {num_kernels = 100000}}]', "num_kernels=100000 is above the maximum"),
])
def test_bad_variant_configs_fail_the_dry_run(variants: str, message: str, tmp_path, capsys) -> None:  # noqa: ANN001
    suite = tmp_path / "s.toml"
    suite.write_text(f'backbones = ["cifar_resnet8"]\nvariants = {variants}\n[measure.params]\n')
    one_line_exit_2(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--dry-run"], capsys, message)


def test_nonsense_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    db = str(tmp_path / "r.sqlite")
    one_line_exit_2(["--db", db, "run", str(suite), "--only", "bogus", "--no-progress"], capsys,
                    "--only 'bogus' names no cell", "variants static, static-se")
    suite.write_text(TINY.replace('["cifar_resnet8"]', '["cifar_resnet8", "cifar_resnet8"]'))
    one_line_exit_2(["--db", db, "run", str(suite), "--dry-run"], capsys, "backbones: duplicate value(s) cifar_resnet8")
    one_line_exit_2(["--db", db, "convert", "cifar_resnet8", "static", "--num-classes", "-5"], capsys,
                    "--num-classes: -5 is not in [1, 100000]")

    def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("export built a model before checking its arguments")

    monkeypatch.setattr("dynconv_bench.models.convert.create_model", no_work)
    one_line_exit_2(["export", "cifar_resnet8", "static", "-o", str(tmp_path / "m.onnx"), "--input-size", "0"],
                    capsys, "--input-size: 0 is not in [1, 4096]")
    one_line_exit_2(["export", "cifar_resnet8", "static", "-o", str(tmp_path)], capsys, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # no store was created


# -- 4. a foreign SQLite file ----------------------------------------------------------------------
def test_a_foreign_sqlite_file_is_refused_byte_identical(tmp_path, capsys) -> None:  # noqa: ANN001
    other = tmp_path / "other_app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    before = snapshot(tmp_path)
    one_line_exit_2(["--db", str(other), "run", str(suite), "--no-progress", "--no-plots"], capsys,
                    "SQLite file of another application (tables: users)")
    with pytest.raises(Exception, match="another application"):
        ResultStore(other)
    assert snapshot(tmp_path) == before
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()  # an empty SQLite file (no tables) may become a store
    with ResultStore(empty) as store:
        assert store.count() == 0


# -- 5. concurrent runs ------------------------------------------------------------------------------
def fake_params(cell: dict, plugins: tuple = ()) -> dict:
    return {"values": {"n": 1}, "status": "ok", "error": None, "environment": {}, "started": None, "finished": None}


def test_a_cell_finished_by_another_run_meanwhile_is_not_measured_again(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    suite = parse_suite({"name": "c", "backbones": ["cifar_resnet8"],
                         "variants": ["static", "static-se", "condconv", "dyconv"], "measure": {"params": {}}})
    db = tmp_path / "c.sqlite"
    measured: list[tuple[str, str]] = []

    def run_a(cell: dict, plugins: tuple = ()) -> dict:
        measured.append(("a", cell["variant"]))
        if len(measured) == 1:  # while run A measures its first cell, run B (another host) runs the suite
            import dynconv_bench.execution.runner as runner

            monkeypatch.setattr(runner, "this_owner", lambda: "otherhost:1")
            run_suite(suite, db, executor=LocalExecutor(fn=run_b), progress=False)
            monkeypatch.undo()
        return fake_params(cell)

    def run_b(cell: dict, plugins: tuple = ()) -> dict:
        measured.append(("b", cell["variant"]))
        return fake_params(cell)

    summary = run_suite(suite, db, executor=LocalExecutor(fn=run_a), progress=False)
    assert sorted(v for _, v in measured) == ["condconv", "dyconv", "static", "static-se"]  # each exactly once
    assert measured[0] == ("a", "static") and summary.ran == 1 and summary.elsewhere == 3
    with ResultStore(db) as store:
        rows = store.rows(history=True)
        assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)


def test_the_heartbeat_survives_a_busy_store(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.execution.runner import _Heartbeat

    db = tmp_path / "h.sqlite"
    ResultStore(db).close()
    calls: list[int] = []
    real = ResultStore.heartbeat

    def flaky(self: ResultStore, owner: str | None = None) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        real(self, owner)

    monkeypatch.setattr(ResultStore, "heartbeat", flaky)
    beat = _Heartbeat(db, "me:1", every=0.05)
    beat.start()
    deadline = time.time() + 10
    while len(calls) < 4 and time.time() < deadline:
        time.sleep(0.05)
    alive = beat._thread.is_alive()
    beat.stop()
    assert alive and len(calls) >= 4  # it kept beating after two failed writes


@pytest.mark.slow  # three CLI processes on one store: ~40 s on a busy 2-core machine
def test_three_concurrent_runs_measure_every_cell_once(tmp_path) -> None:  # noqa: ANN001
    suite = tmp_path / "p.toml"
    suite.write_text('name = "p"\nbackbones = ["cifar_resnet8", "cifar_resnet20", "mobilenetv2_050"]\n'
                     'variants = ["static", "static-se", "condconv", "dyconv", "odconv"]\n[measure.params]\n')
    db = tmp_path / "p.sqlite"
    cmd = [sys.executable, "-c", "from dynconv_bench.cli.main import main; raise SystemExit(main())", "--db", str(db),
           "run", str(suite), "--no-plots", "--no-progress"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"}) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    with ResultStore(db) as store:
        rows = store.rows(history=True)
    keys = [(r["backbone"], r["variant"]) for r in rows]
    assert len(keys) == 15 and len(set(keys)) == 15 and all(r["status"] == "ok" for r in rows)


# -- 6. memory caps ------------------------------------------------------------------------------
def hog(cell: dict, plugins: tuple = ()) -> dict:
    """One op that asks for `batch_size` MiB at once (module level: a subprocess imports it)."""
    import torch

    x = torch.ones(cell["options"]["batch_size"] * 2**18)  # float32: 4 bytes each
    return {"values": {"sum": float(x[:4].sum())}, "status": "ok", "error": None, "environment": {},
            "started": None, "finished": None}


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA and /proc are Linux's")
def test_one_huge_op_in_process_stays_under_the_cap() -> None:
    from dynconv_bench.execution.processes.limits import rss_bytes

    cap = rss_bytes() + 256 * 2**20
    assert _peak_reset()
    out = run_guarded(hog, {"options": {"batch_size": 2048}}, memory_cap=cap)  # 2 GiB in one allocation
    assert _peak() < cap  # never went over, not even for the one op
    assert out["status"] == "failed" and out["error"].startswith("memory cap exceeded: ")
    ok = run_guarded(hog, {"options": {"batch_size": 16}}, memory_cap=cap)
    assert ok["status"] == "ok" and ok["values"] == {"sum": 4.0}
    big = run_guarded(hog, {"options": {"batch_size": 512}}, memory_cap=None)  # the limit was lifted after
    assert big["status"] == "ok"


def test_the_default_cap_leaves_the_machine_usable(monkeypatch) -> None:
    from dynconv_bench.execution.processes import limits

    gib = 2**30
    monkeypatch.setattr(limits, "machine_memory", lambda: 16 * gib)
    monkeypatch.setattr(limits, "rss_bytes", lambda: 1 * gib)
    monkeypatch.setattr(limits, "available_memory", lambda: 10 * gib)
    assert limits.default_memory_cap() == int(1 * gib + 10 * gib - 0.15 * 16 * gib)  # a reserve of 2.4 GiB kept
    monkeypatch.setattr(limits, "available_memory", lambda: 15 * gib)
    assert limits.default_memory_cap() == int(0.8 * 16 * gib)  # never more than 80% of the machine
    monkeypatch.setattr(limits, "available_memory", lambda: 1 * gib)
    assert limits.default_memory_cap() == limits.MIN_MEMORY_CAP  # a crowded machine: the floor, cells fail early


# -- 7. a worker dies with its parent ----------------------------------------------------------
PARENT = """
import json, os, subprocess, sys, time
cmd = [a.replace("PARENT_PID", str(os.getpid())) for a in json.loads(sys.argv[1])]
subprocess.Popen(cmd, stdin=subprocess.PIPE)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_within_2_s_of_its_killed_parent(tmp_path) -> None:  # noqa: ANN001
    from dynconv_bench.execution.processes.isolate import worker_command

    cmd = json.dumps(worker_command("PARENT_PID", tmp_path / "result.pkl"))  # type: ignore[arg-type]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, cmd])
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and not workers:
        workers = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _ppid(p) == parent.pid]
        time.sleep(0.02)
    assert workers, "the parent never started its worker"
    time.sleep(0.3)  # the worker is now importing torch: before the fix it checked its parent only after that
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    killed = time.time()
    while time.time() - killed < 5 and any(_ppid(Path(f"/proc/{w}/stat")) for w in workers):
        time.sleep(0.02)
    assert time.time() - killed < 2.0, "the worker outlived its killed parent"


def _ppid(stat: Path) -> int:
    try:
        text = stat.read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()
    return 0 if fields[0] == "Z" else int(fields[1])  # a zombie has ended

