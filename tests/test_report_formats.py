"""Report formats: the registry, escaping per format of hostile names (Markdown, HTML, CSV, terminal) and the mark
for accuracy near chance. LaTeX: tests/test_report_latex.py."""

from __future__ import annotations

import csv
import io
import re

import pandas as pd
import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.escape import csv_field, md_cell, visible
from dynconv_bench.reporting.formats import get_format, list_formats
from dynconv_bench.reporting.leaderboard import leaderboards, near_chance
from dynconv_bench.reporting.marks import MARKS
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results

SUITE = {"name": "f", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static", "static-se", "dyconv"],
         "measure": {"params": {}, "macs": {}, "speed": {"backbones": ["cifar_resnet8"], "batch_sizes": [1, 8]},
                     "accuracy": {"backbones": ["cifar_resnet8"], "seeds": [0, 1]}}}
HOSTILE = {"static": "static", "static-se": "a_b&c%d#e~f^g{h}$i\\j|k\n<script>alert(1)</script>",
           "dyconv": "=cmd|' /C calc'!A0\x1b[31m\u202e"}


def _fake(cell_: dict, plugins: tuple = ()) -> dict:
    v, o = cell_["variant"], cell_["options"]
    k = {"static": 1.0, "static-se": 1.1, "dyconv": 3.9}[v]
    values = {"params": {"total": int(272_000 * k)},
              "macs": {"macs": int(41_300_000 * k), "overhead_macs": int(1e5 * (k - 1))},
              "speed": {"throughput": 460.0 * o.get("batch_size", 1) / k, "latency_ms": 2.17 * k,
                        "load_avg": 9.0 if v == "dyconv" else 0.5, "cores": 2},  # dyconv timed under load
              # dyconv learned nothing: 12 % on 10 classes is within 5 points of chance
              "accuracy": {"top1": 12.0 + o.get("seed", 0) if v == "dyconv" else 95.0 + k + o.get("seed", 0),
                           "num_classes": 10}}[cell_["kind"]]
    return {"values": values, "status": "ok", "error": None, "started": None, "finished": None,
            "environment": {"host": "box", "cpu_model": "Test CPU", "threads": 2, "torch": "2.x"}}


@pytest.fixture(scope="module")
def df(tmp_path_factory) -> pd.DataFrame:  # noqa: ANN001
    db = tmp_path_factory.mktemp("fmt") / "f.sqlite"
    run_suite(parse_suite(SUITE), db, executor=LocalExecutor(fn=_fake), progress=False)
    return load_results(db, "f")


@pytest.fixture(scope="module")
def hostile(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(variant=df["variant"].map(HOSTILE))


def test_registry_lists_every_format_and_refuses_others(df: pd.DataFrame) -> None:
    assert list_formats() == ["csv", "html", "json", "latex", "md"]  # the installed entry points, by name
    assert get_format("latex").suffix == "tex"
    with pytest.raises(UserError, match="unknown report format 'pdf'; valid: csv, html, json, latex, md"):
        render(df, "pdf")


def test_markdown_keeps_the_table_shape_and_no_raw_html(hostile: pd.DataFrame) -> None:
    md = render(hostile, "md", "f")
    table = md.split("## cifar_resnet8")[1].split("\n\n")[1].splitlines()
    assert len(table) == 2 + 3  # header, rule and one line per variant: the newline did not split a row
    pipes = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert len(pipes) == 1  # the name's | is escaped, so every row has as many cells
    assert re.search(r"(?<!\\)<script>", md) is None and "\\<script>" in md  # escaped: text, not a tag
    assert "\x1b" not in md and "\\x1b[31m" in md and "\u202e" not in md
    assert md_cell("a|b\nc") == "a\\|b<br>c"


def test_html_escapes_script(hostile: pd.DataFrame) -> None:
    page = render(hostile, "html", "f")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_csv_fields_that_a_spreadsheet_would_run_are_prefixed(hostile: pd.DataFrame) -> None:
    text = render(hostile, "csv", "f")
    rows = list(csv.reader(io.StringIO(text)))
    variants = [r[2] for r in rows[1:]]
    assert "'=cmd|' /C calc'!A0\x1b[31m\\u202e" in variants  # OWASP: a leading ' makes it text; bidi shown
    assert all(not str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for v in r if v and
               not re.fullmatch(r"-?[\d.e+-]+", v))
    numbers = pd.read_csv(io.StringIO(text))
    assert (numbers["top-1 digits (%) vs static (pts)"].dropna() < 0).any()  # negative numbers stay numbers
    assert [csv_field(x) for x in ("+1", "-x", "@SUM(A1)", "\tx", "\rx", "ok", -3.5)] == [
        "'+1", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "ok", -3.5]


def test_terminal_text_shows_controls_as_escapes() -> None:
    assert visible("a\x1b[31mb\u202ec\u200fd\re\tf\ng\x00") == "a\\x1b[31mb\\u202ec\\u200fd\\re\tf\ng\\x00"


def test_accuracy_near_chance_is_marked_and_explained(df: pd.DataFrame) -> None:
    board = leaderboards(df)["cifar_resnet8"]
    assert board["top-1 digits (%) marks"].tolist() == ["", "", "†"]  # dyconv 12.5 % on 10 classes
    md = render(df, "md", "f")
    assert f"`†`: {MARKS['†']}." in md and md.count("`†`:") == 1  # under cifar_resnet8 only
    assert "12.50 ± 0.71 (n=2)†" in md
    # the rule: within 5 points of chance, or a 95% t interval of the mean (over seeds) that reaches it
    assert near_chance([14.9], 10.0) and not near_chance([15.1], 10.0)
    assert near_chance([11.0, 31.0], 10.0)  # mean 21, but t(0.975, 1) * 14.1 / sqrt(2) = 127: reaches chance
    assert not near_chance([20.0, 21.0], 10.0)  # 20.5 - 12.706 * 0.707 / 1.414 = 14.1 > 10
