"""Issue 35 (B): a name a user chose makes no link or HTML in Markdown, no formula in a spreadsheet, no invisible
reordering (bidi overrides, format characters) in any report, and no mathtext in a figure."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.escape import csv_field, md_cell, md_text, visible
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results

# invisible format characters (Unicode Cf) and the line/paragraph separators: each one reorders or hides text
HIDDEN = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b",
          "\u200c", "\u200d", "\u2060", "\u2061", "\ufeff", "\u00ad", "\U000e0041", "\U000e007f", "\u2028", "\u2029",
          "\ufff9", "\u0600", "\u180e"]
LINK = "[x](javascript:alert(1))"
MATH = "$\\undefinedmacro$"


def fake_cell(cell: dict, plugins: tuple = ()) -> dict:
    values = {"params": {"total": 1000 + len(cell["variant"])},
              "macs": {"macs": 4_000_000 + len(cell["variant"]), "overhead_macs": 0},
              "accuracy": {"top1": 90.0 + len(cell["variant"]) % 7 + cell["options"].get("seed", 0),
                           "num_classes": 10},
              "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d", "time_ms": 0.1 * i, "calls": 1}
                                    for i in range(4)]}}[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"},
            "started": None, "finished": None}


def store_with_labels(path: Path, labels: list[str], kinds: tuple[str, ...] = ("params", "macs")) -> str:
    """A store whose variants carry `labels` (suite labels pass validation: printable, at most 64 characters)."""
    measure = {k: ({"seeds": [0, 1]} if k == "accuracy" else {}) for k in kinds}
    suite = parse_suite({"name": "e", "backbones": ["cifar_resnet8"],
                         "variants": ["static", *({"variant": "static", "name": n} for n in labels)],
                         "measure": measure})
    run_suite(suite, path, executor=LocalExecutor(fn=fake_cell), progress=False)
    return str(path)


def set_variant(db: str, old: str, new: str) -> None:
    """Rename a variant in the store (names that a suite would refuse, as a store from elsewhere may hold)."""
    with sqlite3.connect(db) as con:
        con.execute("UPDATE results SET variant = ? WHERE variant = ?", (new, old))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> pd.DataFrame:  # noqa: ANN001
    db = store_with_labels(tmp_path_factory.mktemp("esc") / "e.sqlite", ["a", "b", "c", "d", "e"])
    for old, new in zip("abcde", [LINK, "see https://evil.example and www.evil.example or a@evil.example",
                                  "&#x202e;gpj.exe", "\u202egpj.exe" + "".join(HIDDEN), " =1+1"]):
        set_variant(db, old, new)
    return load_results(db, "e")


# -- Markdown: no link, no image, no HTML --------------------------------------------------------------------
def test_markdown_text_makes_no_link() -> None:
    from dynconv_bench.reporting.escape import md_label

    assert md_text(LINK) == "[x\\](javascript:alert(1))"
    assert md_text("![i](http://e/x.png)") == "![i\\](http\\://e/x.png)"
    assert md_text("[a]: http://x") == "[a\\]: http\\://x"  # no link reference definition
    assert md_text("[a] [b]") == "[a\\] [b]" and md_text("[a][b]") == "[a\\][b]"
    assert md_text("www.x.org https://x.org a@x.org") == "www\\.x.org https\\://x.org a\\@x.org"  # GFM autolinks
    assert md_text("<a href=x>&#x202e;") == "\\<a href=x>\\&#x202e;"  # no tag, no entity
    assert md_label("[x/y/z]") == "[x/y/z\\]"  # our `: ` follows it: no definition either
    assert md_cell("-1.94 [-3.1, +0.2]") == "-1.94 [-3.1, +0.2]"  # a table's intervals stay as they were
    assert md_cell(LINK + "|b") == "[x\\](javascript:alert(1))\\|b"


def test_a_markdown_report_has_no_live_link(hostile: pd.DataFrame) -> None:
    md = render(hostile, "md", "e")
    assert "[x\\](javascript:alert(1))" in md
    assert re.search(r"(?<!\\)\]\s*[(\[:]", md.split("## cifar_resnet8")[1]) is None  # no unescaped ]( ][ ]:
    assert "https://" not in md and "www.evil" not in md and "a@evil" not in md
    assert re.search(r"(?<!\\)&#x202e;", md) is None and "\\&#x202e;" in md


# -- every format: invisible format characters are shown, never written raw ------------------------------------
def test_visible_shows_every_format_character() -> None:
    for char in HIDDEN:
        shown = visible(f"a{char}b")
        assert char not in shown and shown.startswith("a\\") and shown.endswith("b"), repr(char)
    assert visible("tab\tnew\nline é 变体 ±†") == "tab\tnew\nline é 变体 ±†"  # text stays text


@pytest.mark.parametrize("fmt", ["md", "csv", "html", "json", "latex"])
def test_no_report_format_writes_a_format_character(hostile: pd.DataFrame, fmt: str) -> None:
    text = render(hostile, fmt, "e")
    assert "gpj.exe" in text
    for char in HIDDEN:
        assert char not in text, (fmt, repr(char))


def test_html_text_and_json_round_trip(hostile: pd.DataFrame) -> None:
    from dynconv_bench.reporting.escape import html_text

    assert html_text("\u202e<b>") == "\\u202e&lt;b&gt;"
    data = json.loads(render(hostile, "json", "e"))  # JSON is ASCII: the value itself is kept, escaped
    assert any("\u202egpj.exe" in row["variant"] for row in data["leaderboards"]["cifar_resnet8"])


# -- CSV: formulas found after spaces and in full-width forms --------------------------------------------------
@pytest.mark.parametrize("text", [" =1+1", "  +1", "\u3000=cmd", "\u00a0@x", "\uff1dcmd|' /C calc'!A0", "\uff0b1",
                                  "\uff0dx", "\uff20SUM(A1)", "\ufe66x", " \uff1d1", "=1", "\t=1", "\r=1"])
def test_csv_formulas_behind_spaces_and_full_width_forms_are_prefixed(text: str) -> None:
    assert csv_field(text) == "'" + text


def test_csv_leaves_text_and_numbers_and_shows_format_characters() -> None:
    assert [csv_field(x) for x in ("ok", " ok", "a=b", -3.5, 7, "ａｂ")] == ["ok", " ok", "a=b", -3.5, 7, "ａｂ"]
    assert csv_field("a\u202eb\u2028") == "a\\u202eb\\u2028"
    assert csv_field("\u200b=1") == "\\u200b=1"  # shown: the field starts with a backslash, no formula


def test_a_csv_report_has_no_formula(hostile: pd.DataFrame) -> None:
    rows = list(csv.reader(io.StringIO(render(hostile, "csv", "e"))))
    variants = {r[2] for r in rows[1:]}
    assert "' =1+1" in variants
    assert "\\u202egpj.exe" + "".join(visible(c) for c in HIDDEN) in variants


def test_a_compared_run_is_escaped_too(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    db = store_with_labels(tmp_path / "c.sqlite", ["a"])
    suite = parse_suite({"name": "e", "backbones": ["cifar_resnet8"],
                         "variants": ["static", {"variant": "static", "name": "a"}], "measure": {"params": {}}})
    run_suite(suite, db, executor=LocalExecutor(fn=fake_cell), progress=False, force=True)
    set_variant(db, "a", "x\u202e")
    with sqlite3.connect(db) as con:  # a store from elsewhere: its backbone leads the compared cell's name
        con.execute("UPDATE results SET backbone = ?", ("\uff1dcmd",))
    assert main(["--db", db, "report", "--runs"]) == 0
    runs = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    out = tmp_path / "cmp.csv"
    assert main(["--db", db, "report", "--compare", *runs[:2], "--format", "csv", "-o", str(out)]) == 0
    cells = [r[1] for r in csv.reader(io.StringIO(out.read_text(encoding="utf-8")))][1:]
    assert "'\uff1dcmd/x\\u202e/params" in cells and all(c.startswith("'") for c in cells)
    assert main(["--db", db, "report", "--compare", *runs[:2], "--format", "html", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "\uff1dcmd/x\\u202e/params" in text and "\u202e" not in text


# -- figures: labels are plain text ---------------------------------------------------------------------------
def test_a_label_with_dollars_is_plotted_as_text(tmp_path: Path) -> None:
    from dynconv_bench.reporting.plots import make_plots

    db = store_with_labels(tmp_path / "p.sqlite", [MATH, "a$b", "50$ \\$"], ("params", "accuracy", "layers"))
    paths = make_plots(load_results(db, "e"), tmp_path / "plots", "e")
    names = [p.name for p in paths]
    assert any("_acc-vs-params_" in n for n in names)  # the point labels
    assert sum("_layers_" in n and n.endswith(".png") for n in names) == 4  # the titles
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    svg = next(p for p in paths if "_acc-vs-params_" in p.name and p.suffix == ".svg").read_text()
    assert "\\undefinedmacro" in svg and "50$ \\$" in svg  # drawn as written
    from PIL import Image

    layers = next(p for p in paths if p.suffix == ".png" and "_layers_" in p.name and
                  "undefinedmacro" in (Image.open(p).text or {}).get("Title", ""))
    assert Image.open(layers).text["Title"].startswith(f"cifar_resnet8 / {MATH}: per-layer latency")


def test_plot_and_run_survive_a_mathtext_label(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    db = store_with_labels(tmp_path / "p.sqlite", [MATH], ("params", "layers"))
    assert main(["--db", db, "plot", "--out-dir", str(tmp_path / "plots")]) == 0
    assert any(p.suffix == ".pdf" for p in (tmp_path / "plots").iterdir())
    suite = tmp_path / "m.toml"  # the label passes validation; the figures after the measurement are drawn
    suite.write_text('name = "m"\nbackbones = ["cifar_resnet8"]\n'
                     'variants = [{variant = "static", name = "$\\\\undefinedmacro$"}]\n'
                     '[measure.layers]\nbatch_size = 1\nrepeats = 1\n')
    code = main(["--db", str(tmp_path / "m.sqlite"), "run", str(suite), "--no-progress",
                 "--plots-dir", str(tmp_path / "mplots")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and any(p.suffix == ".svg" for p in (tmp_path / "mplots").iterdir())
