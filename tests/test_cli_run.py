"""CLI `run`, `report`, `plot`, `suites`, `train`: exit codes, one-line user errors, printed leaderboard."""

from __future__ import annotations

import json

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.execution.store import ResultStore

FAILING_PLUGIN = '''
from dynconv_bench import Param, Variant, register_variant

@register_variant
class Broken(Variant):
    name = "broken-cli-test"
    params = {"policy": Param("blocks", type=str)}
    def convert_conv(self, site):
        raise RuntimeError("this variant always fails")
'''


def test_run_prints_leaderboard_plots_and_skips_on_rerun(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    suite, db, plots = write_suite(), tmp_path / "r.sqlite", tmp_path / "plots"
    args = ["--db", str(db), "run", str(suite), "--no-progress", "--plots-dir", str(plots)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "suite tiny: 2 cells, 2 run, 0 already done, 0 failed" in out
    assert "## cifar_resnet8" in out and "| static-se" in out and "params (M)" in out
    assert f"plots: 0 figures (PNG + SVG + PDF) in {plots}" in out  # params alone give no trade-off plot
    assert main(args) == 0
    assert "2 cells, 0 run, 2 already done" in capsys.readouterr().out
    assert main(args + ["--force"]) == 0
    assert "2 cells, 2 run, 0 already done" in capsys.readouterr().out
    with ResultStore(db) as store:
        assert store.count() == 2


def test_run_with_env_db_and_dry_run(tmp_path, write_suite, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DYNCONV_BENCH_DB", str(tmp_path / "env.sqlite"))
    assert main(["run", str(write_suite()), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "suite tiny: 2 cells to run, 0 already done" in out and "cifar_resnet8/static-se/params" in out
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.toml"]  # a dry run creates no store file
    assert main(["run", str(write_suite()), "--no-progress", "--no-plots", "--only", "static"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert main(["run", str(write_suite()), "--dry-run"]) == 0
    assert "suite tiny: 1 cells to run, 1 already done" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # and changes nothing in one


def test_failed_cell_exits_1_naming_it(tmp_path, capsys) -> None:  # noqa: ANN001
    plugin = tmp_path / "broken.py"
    plugin.write_text(FAILING_PLUGIN)
    suite = tmp_path / "f.toml"
    suite.write_text('backbones = ["cifar_resnet8"]\nvariants = ["static", "broken-cli-test"]\n[measure.params]\n')
    code = main(["--plugin", str(plugin), "--db", str(tmp_path / "f.sqlite"), "run", str(suite), "--no-progress",
                 "--no-plots"])
    captured = capsys.readouterr()
    assert code == 1
    assert "cifar_resnet8/broken-cli-test/params: RuntimeError: this variant always fails" in captured.err
    assert "| static" in captured.out  # the rest of the run went on and is reported


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-suite"], "unknown suite 'no-such-suite'"),
    (["run", "smoke", "--executor", "dask"], "invalid choice: 'dask'"),
    (["run", "smoke", "--timeout", "5"], "--timeout needs --subprocess"),
    (["report", "--format", "pdf"], "invalid choice: 'pdf'"),
    (["run", "smoke", "--memory-cap", "lots"], "memory cap 'lots' must be bytes (e.g. 4GiB, 512MB)"),
    (["report", "--compare", "aaa", "bbb"], "results store not found"),
])
def test_user_errors_are_one_line_exit_2(argv: list, message: str, tmp_path, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as info:
        code = main(["--db", str(tmp_path / "x.sqlite"), *argv])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_suite_file_never_touches_the_store(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    db = tmp_path / "r.sqlite"
    assert main(["--db", str(db), "run", str(write_suite()), "--no-progress", "--no-plots"]) == 0
    before = ResultStore(db).rows()
    bad = write_suite('backbones = ["cifar_resnet8"]\nvariants = ["statik"]\n[measure.params]\n', name="bad")
    assert main(["--db", str(db), "run", str(bad)]) == 2
    assert "bad.toml: variants[0]: unknown variant 'statik' (did you mean 'static'?)" in capsys.readouterr().err
    assert ResultStore(db).rows() == before


def test_report_and_plot_commands(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    db = str(tmp_path / "r.sqlite")
    assert main(["--db", db, "report"]) == 2
    assert "results store not found" in capsys.readouterr().err
    main(["--db", db, "run", str(write_suite()), "--no-progress", "--no-plots"])
    capsys.readouterr()
    assert main(["--db", db, "report", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["suite"] == "tiny" and [r["variant"] for r in data["leaderboards"]["cifar_resnet8"]] == [
        "static", "static-se"]
    out = tmp_path / "board.html"
    assert main(["--db", db, "report", "--suite", "tiny", "--format", "html", "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["--db", db, "report", "--suite", "nope"]) == 2
    assert "unknown suite in the store 'nope'; valid: tiny" in capsys.readouterr().err
    assert main(["--db", db, "plot", "--out-dir", str(tmp_path / "p")]) == 0
    assert "no figures: suite tiny" in capsys.readouterr().out


def test_suites_and_train_commands(capsys) -> None:  # noqa: ANN001
    assert main(["suites"]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "cpu" in out and "invalid" not in out
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_db_that_cannot_be_a_store_is_one_line_exit_2(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    suite = str(write_suite())
    assert main(["--db", str(tmp_path), "run", suite, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"dynconv-bench: error: results store {tmp_path} is a directory; pass a file path such as " \
                  f"{tmp_path / 'results.sqlite'}\n"
    assert main(["--db", "/proc/x.sqlite", "run", suite, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynconv-bench: error: cannot write the results store /proc/x.sqlite: ")
    assert err.count("\n") == 1


def test_negative_min_time_is_rejected(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    bad = write_suite('backbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.speed]\nmin_time = -5\n',
                      name="neg")
    assert main(["--db", str(tmp_path / "r.sqlite"), "run", str(bad)]) == 2
    assert "neg.toml: measure.speed: min_time=-5.0 is below the minimum 0.0" in capsys.readouterr().err
    assert not (tmp_path / "r.sqlite").exists()


def test_history_runs_and_compare(tmp_path, write_suite, capsys) -> None:  # noqa: ANN001
    db, suite = str(tmp_path / "r.sqlite"), str(write_suite())
    for _ in range(2):
        assert main(["--db", db, "run", suite, "--no-progress", "--no-plots", "--force"]) == 0
    with ResultStore(db) as store:
        runs = [r["run_id"] for r in store.runs()]
        assert len(runs) == 2 and store.count() == 2 and store.count(history=True) == 4
    capsys.readouterr()
    assert main(["--db", db, "report", "--runs"]) == 0
    listing = capsys.readouterr().out
    assert all(r in listing for r in runs) and listing.count("tiny") == 2
    assert main(["--db", db, "report", "--compare", runs[0][:6], runs[1], "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["cell"] for r in rows} == {"cifar_resnet8/static/params", "cifar_resnet8/static-se/params"}
    assert all(r["metric"] == "params" and r["unit"] == "M" and r["A"] == r["B"] > 0 and r["B / A"] == 1.0 for r in rows)  # exact counts
    assert main(["--db", db, "report", "--compare", runs[0], "nope"]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
