"""Hostile stores (issue 35, items 2, 3, 6): a store edited outside dynconv-bench is reported without the rows it
cannot use (one warning naming their ids), a store without required columns is one line, a file name that is
no UTF-8 opens, and values outside their kind's range are marked."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite

from .test_hostile import one_line_exit_2

FORMATS = ["md", "csv", "json", "html", "latex"]
SUITE = {"name": "hs", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
         "measure": {"params": {}, "macs": {}, "speed": {}, "memory": {}, "accuracy": {"datasets": ["digits"]},
                     "layers": {}, "deploy": {}}}


def fake_cell(cell: dict, plugins: tuple = ()) -> dict:
    """Plausible values of every built-in kind, without measuring anything."""
    v = len(cell["variant"])
    values = {
        "params": {"total": 1000 + v, "deployed": {"total": 900 + v}},
        "macs": {"macs": 10**6 + v, "params": 1000 + v},
        "speed": {"median_s": 0.01 * v, "throughput": 100.0 / v, "latency_ms": 10.0 * v, "batch_size": 1,
                  "threads": 1, "device": "cpu"},
        "memory": {"peak_bytes": 10**6 * v, "batch_size": 1},
        "accuracy": {"top1": 50.0 + v, "top5": 90.0, "loss": 1.0, "dataset": "digits", "num_classes": 10,
                     "seed": 0, "temperature_schedules": ["t"], "final_temperatures": [1.0]},
        "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d", "time_ms": 0.1 * i, "calls": 1}
                              for i in range(4)], "batch_size": 1},
        "deploy": {"targets": {"onnx": {"status": "ok", "max_rel_diff": 1e-6, "ort_vs_eager": 1.5},
                               "torchscript": {"status": "failed", "error": "no"}}, "ok": ["onnx"]},
    }[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box", "threads": 1},
            "started": None, "finished": None}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed store with one faked row of every built-in kind per variant (suite `hs`)."""
    db = tmp_path_factory.mktemp("pristine") / "r.sqlite"
    run_suite(parse_suite(SUITE), db, executor=LocalExecutor(fn=fake_cell), progress=False)
    for extra in db.parent.glob("r.sqlite-*"):
        extra.unlink()
    shutil.rmtree(db.parent / "plots", ignore_errors=True)
    return db


@pytest.fixture
def db(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "r.sqlite"
    shutil.copy(pristine, path)
    return path


def edit(db: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(db) as conn:
        if "DROP COLUMN" in sql:  # the indexes name the key columns
            conn.execute("DROP INDEX IF EXISTS results_cell")
            conn.execute("DROP INDEX IF EXISTS results_run")
        conn.execute(sql, args)
    conn.close()


def row_id(db: Path, kind: str, variant: str = "static-se") -> int:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT id FROM results WHERE kind=? AND variant=?", (kind, variant)).fetchone()[0]
    conn.close()
    return int(found)


def cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- item 2: a --db name that is no UTF-8 -------------------------------------------------------------
@pytest.mark.parametrize("verb", ["report", "run", "plot"])
def test_a_store_name_that_is_no_utf8_opens(verb: str, pristine: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    name = os.fsdecode(b"\xff\xfe.sqlite")  # held as surrogate escapes, as argv gives it
    shutil.copy(pristine, tmp_path / name)
    suite = tmp_path / "hs.toml"
    suite.write_text('name = "hs"\nbackbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.params]\n')
    argv = {"report": ["report"], "plot": ["plot", "--out-dir", str(tmp_path / "figs")],
            "run": ["run", str(suite), "--no-plots", "--no-progress"]}[verb]
    code, out, err = cli(["--db", str(tmp_path / name), *argv], capsys)
    assert code == 0, err
    assert (tmp_path / name).is_file()


# -- item 3: rows the reader cannot use, stores without the columns it needs ---------------------------
DAMAGE = [  # (kind of the damaged row, SQL with ? = that row's id)
    ("speed", """UPDATE results SET "values"=json_set("values", '$.throughput', 'fast') WHERE id=?"""),
    ("speed", """UPDATE results SET "values"=json_set("values", '$.throughput', json('[1, 2]')) WHERE id=?"""),
    ("speed", """UPDATE results SET "values"=json_set("values", '$.process_ratios', json('[1, "x"]')) WHERE id=?"""),
    ("params", """UPDATE results SET "values"='[1, 2, 3]' WHERE id=?"""),
    ("params", """UPDATE results SET "values"='42' WHERE id=?"""),
    ("params", """UPDATE results SET "values"='"text"' WHERE id=?"""),
    ("accuracy", """UPDATE results SET "values"=json_set("values", '$.top1', json('{"a": 1}')) WHERE id=?"""),
    ("accuracy", """UPDATE results SET options=json_set(options, '$.dataset', json('[1]')) WHERE id=?"""),
    ("memory", """UPDATE results SET options='[]' WHERE id=?"""),
    ("macs", """UPDATE results SET environment='7' WHERE id=?"""),
    ("layers", """UPDATE results SET "values"=json_set("values", '$.layers[0].time_ms', 'slow') WHERE id=?"""),
    ("deploy", """UPDATE results SET "values"=json_set("values", '$.targets.onnx.max_rel_diff', 'x') WHERE id=?"""),
    ("deploy", """UPDATE results SET "values"=json_set("values", '$.targets', json('[1]')) WHERE id=?"""),
    ("params", """UPDATE results SET "values"=? || '1' || ? WHERE id=?"""),  # 100k levels of nesting
    ("params", """UPDATE results SET variant=x'ff00' WHERE id=?"""),  # a BLOB in a text column
]


def _damage(db: Path, kind: str, sql: str) -> int:
    bad = row_id(db, kind)
    if sql.count("?") == 3:
        edit(db, sql, "[" * 100_000, "]" * 100_000, bad)
    else:
        edit(db, sql, bad)
    return bad


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind, sql", DAMAGE, ids=[f"{k}-{i}" for i, (k, _) in enumerate(DAMAGE)])
def test_a_row_the_reader_cannot_use_is_left_out_with_one_warning(kind: str, sql: str, fmt: str, db: Path,
                                                                   capsys) -> None:  # noqa: ANN001
    bad = _damage(db, kind, sql)
    code, out, err = cli(["--db", str(db), "report", "--format", fmt, "--no-plots"], capsys)
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("dynconv-bench: warning: left out 1 store row(s)"), err
    assert err.rstrip().endswith(f"id {bad}"), err
    assert "static" in out  # the rest is reported


@pytest.mark.parametrize("kind, sql", DAMAGE[:3] + DAMAGE[10:14], ids=[f"plot-{i}" for i in range(7)])
def test_plot_leaves_out_a_row_it_cannot_use(kind: str, sql: str, db: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = _damage(db, kind, sql)
    code, out, err = cli(["--db", str(db), "plot", "--out-dir", str(tmp_path / "figs")], capsys)
    assert code == 0, err
    assert err.count("\n") == 1 and err.rstrip().endswith(f"id {bad}"), err
    assert any(p.suffix == ".png" for p in (tmp_path / "figs").iterdir())


@pytest.mark.parametrize("column", ["values", "kind", "status", "variant"])
@pytest.mark.parametrize("verb", ["report", "plot"])
def test_a_store_without_a_required_column_is_one_line(column: str, verb: str, db: Path, tmp_path: Path,
                                                       capsys) -> None:  # noqa: ANN001
    edit(db, f'ALTER TABLE results DROP COLUMN "{column}"')
    argv = ["report"] if verb == "report" else ["plot", "--out-dir", str(tmp_path / "figs")]
    one_line_exit_2(["--db", str(db), *argv], capsys, "no column(s)", column)


@pytest.mark.parametrize("column", ["environment", "options", "config", "finished", "run_id", "error"])
def test_a_store_without_an_optional_column_reports(column: str, db: Path, capsys) -> None:  # noqa: ANN001
    edit(db, f'ALTER TABLE results DROP COLUMN "{column}"')
    for fmt in FORMATS:
        code, out, err = cli(["--db", str(db), "report", "--format", fmt, "--no-plots"], capsys)
        assert code == 0 and not err, err


def test_claims_edited_into_nonsense_are_read(db: Path, capsys) -> None:  # noqa: ANN001
    edit(db, "INSERT INTO results (suite, backbone, variant, variant_name, config, config_hash, kind, options, "
             "options_hash, status, owner, heartbeat) VALUES ('hs', 'cifar_resnet8', 'static', 'static', '{}', 'x', "
             "'params', '{}', 'y', 'running', x'ff', x'00')")  # BLOBs: SQLite keeps them as bytes
    code, out, err = cli(["--db", str(db), "report"], capsys)
    assert code == 0 and not err, err


# -- item 6: values outside their kind's valid range are left out, with the warning line ---------------
OUT_OF_RANGE = [
    ("params", "$.total", "-5000", "params is -0.005"),
    ("speed", "$.throughput", "-5", "throughput is -5"),
    ("speed", "$.throughput", "9e999", "throughput is inf"),  # JSON's 9e999 reads as infinity
    ("speed", "$.latency_ms", "0", "latency is 0"),
    ("accuracy", "$.top1", "140", "top1 is 140"),
    ("memory", "$.peak_bytes", "-1048576", "peak_memory is -1"),
    ("speed", "$.baseline_ratio", "-2", "ratio of throughput"),
]


@pytest.mark.parametrize("kind, path, value, reason", OUT_OF_RANGE, ids=[f"{k}{p}={v}" for k, p, v, _ in OUT_OF_RANGE])
def test_values_outside_their_range_are_left_out_with_a_warning(kind: str, path: str, value: str, reason: str,
                                                                db: Path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.store_read import unusable_row

    bad = row_id(db, kind)
    edit(db, f"""UPDATE results SET "values"=json_set("values", '{path}', json('{value}')) WHERE id=?""", bad)
    for fmt in FORMATS:
        code, out, err = cli(["--db", str(db), "report", "--format", fmt, "--no-plots"], capsys)
        assert code == 0 and err.count("\n") == 1 and "outside their valid range" in err, err
        assert err.rstrip().endswith(f"id {bad}"), err
    with ResultStore(db, readonly=True) as store:
        rows = store.rows(history=True)
        assert bad in store.malformed and len(rows) == 13
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        raw = dict(conn.execute("SELECT * FROM results WHERE id=?", (bad,)).fetchone())
    conn.close()
    assert reason in (unusable_row(raw) or "")
