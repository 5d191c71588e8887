"""The command line explains itself: every option has help, `--db` belongs to the verbs that use a store,
`--only` offers a union and an intersection, and names a user chose reach the terminal with controls escaped."""

from __future__ import annotations

import argparse
import sqlite3

import pytest

from dynconv_bench.cli.main import STORE_VERBS, build_parser, main
from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite, select_cells
from dynconv_bench.execution.suite import parse_suite


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{verb or '(top)'} {a.option_strings or a.dest}" for verb, p in _parsers().items()
               for a in p._actions if not isinstance(a, argparse._HelpAction)
               and (not a.help or a.help == argparse.SUPPRESS) and not isinstance(a, argparse._SubParsersAction)]
    assert missing == []


def test_db_only_on_the_verbs_that_use_a_store(capsys) -> None:  # noqa: ANN001
    with_db = sorted(v for v, p in _parsers().items() if v and "--db" in p._option_string_actions)
    assert with_db == sorted(STORE_VERBS)
    assert main(["--db", "x.sqlite", "variants"]) == 2
    assert "--db is an option of run, report, plot; `variants` uses no results store" in capsys.readouterr().err


def test_top_level_help_speaks_to_a_user() -> None:
    text = build_parser().format_help()
    assert "Benchmark dynamic convolutions" in text and "verb modules" not in text


def test_variants_names_the_venue_year_once(capsys) -> None:  # noqa: ANN001
    assert main(["variants"]) == 0
    heads = [ln for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith(" ")]
    dyconv = next(h for h in heads if h.startswith("dyconv "))
    assert dyconv.endswith("CVPR 2020") and not any(h.endswith(("2019 (2019)", "2020 (2020)")) for h in heads)


def _cells():  # noqa: ANN202
    return parse_suite({"name": "o", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static", "static-se"],
                        "measure": {"params": {}, "macs": {}}}).cells()


def test_only_repeated_is_a_union_and_plus_an_intersection() -> None:
    cells = _cells()
    union = select_cells(cells, ["params", "resnet18"])
    assert {(c.kind, c.backbone) for c in union} == {("params", "cifar_resnet8"), ("params", "resnet18"),
                                                     ("macs", "resnet18")}
    both = select_cells(cells, ["params+resnet18"])
    assert {(c.kind, c.backbone, c.variant) for c in both} == {("params", "resnet18", "static"),
                                                               ("params", "resnet18", "static-se")}
    assert len(select_cells(cells, ["params+resnet18+static-se", "macs+cifar_resnet8+static"])) == 2
    with pytest.raises(UserError, match="--only 'speed' names no cell"):
        select_cells(cells, ["params+speed"])


def test_names_reach_the_terminal_with_controls_escaped(tmp_path, capsys) -> None:  # noqa: ANN001
    def fake(cell: dict, plugins: tuple = ()) -> dict:
        return {"values": {"total": 1000}, "status": "ok", "error": None, "started": None, "finished": None,
                "environment": {"host": "box"}}

    db = tmp_path / "t.sqlite"
    run_suite(parse_suite({"name": "t", "backbones": ["cifar_resnet8"], "variants": ["static", "static-se"],
                           "measure": {"params": {}}}), db, executor=LocalExecutor(fn=fake), progress=False)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE results SET variant = ? WHERE variant = 'static-se'", ("red\x1b[31m\u202eevil",))
    assert main(["--db", str(db), "report"]) == 0  # Markdown: escaped as text, its backslashes doubled
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "red\\\\x1b[31m\\\\u202eevil" in out
    assert main(["--db", str(db), "report", "--format", "csv"]) == 0  # CSV keeps text: stdout shows the escapes
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "red\\x1b[31m\\u202eevil" in out
