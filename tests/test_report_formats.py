"""Report formats: the registry, LaTeX (parsed here, compiled in the slow tier), escaping per format of hostile
names (Markdown, HTML, CSV, LaTeX, terminal) and the mark for accuracy near chance."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.escape import csv_field, md_cell, visible
from dynconv_bench.reporting.formats import get_format, list_formats
from dynconv_bench.reporting.formats.latex import cell
from dynconv_bench.reporting.marks import MARKS
from dynconv_bench.reporting.report import leaderboards, load_results, near_chance, render

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
    assert list_formats() == ["md", "csv", "json", "latex", "html"]
    assert get_format("latex").suffix == "tex"
    with pytest.raises(UserError, match="unknown report format 'pdf'; valid: csv, html, json, latex, md"):
        render(df, "pdf")


def _rows(tex: str) -> list[list[str]]:
    """The cells of every body row of the LaTeX tabulars (split at unescaped &)."""
    out = []
    for body in re.findall(r"\\midrule\n(.*?)\\bottomrule", tex, re.S):
        out += [re.split(r"(?<!\\)&", row.removesuffix("\\\\").strip()) for row in body.strip().split("\\\\\n")]
    return [[c.strip() for c in r] for r in out]


def test_latex_has_one_booktabs_table_per_backbone_with_the_markdown_columns(df: pd.DataFrame) -> None:
    tex = render(df, "latex", "f")
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    assert len(tables) == 2 and all(t.count("\\toprule") == t.count("\\bottomrule") == 1 for t in tables)
    assert [re.search(r"\\caption\{(.*?):", t).group(1) for t in tables] == ["cifar\\_resnet8", "resnet18"]
    md_head = next(ln for ln in render(df, "md", "f").splitlines() if ln.startswith("| variant"))
    columns = [c.strip() for c in md_head.strip("|").split("|")]
    head = re.search(r"\\toprule\n(.*?)\\\\\n\\midrule", tables[0], re.S).group(1)
    assert [c.strip() for c in re.split(r"(?<!\\)&", head)] == [c.replace("%", "\\%") for c in columns]
    rows = _rows(tables[0])
    assert [r[0] for r in rows] == ["static", "static-se", "dyconv"] and {len(r) for r in rows} == {len(columns)}
    # the marks as superscripts, explained once under the table: load (!) and chance (dagger)
    latency = rows[2][columns.index("latency cpu b1 (ms), x: speed-up")]
    assert latency.endswith("\\textsuperscript{!}") and "(0.26x)" in latency
    assert rows[2][columns.index("top-1 digits (%)")].endswith("\\textsuperscript{\\dag{}}")
    foot = tables[0].split("\\bottomrule")[1]
    assert "\\textsuperscript{!}measured while the 1-minute load average" in foot
    assert "\\textsuperscript{\\dag{}}top-1 within 5 points of chance" in foot and "\\~" not in foot
    assert len(set(re.findall(r"\\label\{(.*?)\}", tex))) == 2


def test_latex_escapes_labels_and_keeps_every_row(hostile: pd.DataFrame) -> None:
    tex = render(hostile, "latex", "f")
    first = [r[0] for r in _rows(tex)][:3]
    assert first[1] == ("a\\_b\\&c\\%d\\#e\\textasciitilde{}f\\textasciicircum{}g\\{h\\}\\$i\\textbackslash{}j"
                        "\\textbar{}k \\textless{}script\\textgreater{}alert(1)\\textless{}/script\\textgreater{}")
    assert first[2].startswith("=cmd\\textbar{}' /C calc'!A0\\textbackslash{}x1b[31m\\textbackslash{}u202e")
    assert "\x1b" not in tex and "\u202e" not in tex
    assert cell("-1.94 [-3.1, +0.2] *") == "-1.94 [-3.1, +0.2]\\textsuperscript{*}"
    assert cell("2.20 (1.02x)!~") == "2.20 (1.02x)\\textsuperscript{!\\textasciitilde{}}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (apt-get install texlive-latex-recommended)")
def test_latex_compiles(df: pd.DataFrame, hostile: pd.DataFrame, tmp_path: Path) -> None:
    for name, frame in (("plain", df), ("hostile", hostile)):
        (tmp_path / f"{name}.tex").write_text(render(frame, "latex", "f"), encoding="utf-8")
        doc = tmp_path / f"doc-{name}.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
                       f"\\begin{{document}}\n\\input{{{name}.tex}}\n\\end{{document}}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
        assert (tmp_path / f"doc-{name}.pdf").stat().st_size > 1000


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


def test_every_leaderboard_mark_has_a_latex_form_and_leaves_the_value_text() -> None:
    from dynconv_bench.reporting.formats import latex
    from dynconv_bench.reporting.marks import MARKS

    assert set(MARKS) <= set(latex._MARK_TEX)
    for mark in MARKS:
        out = latex.cell(f"2.41 (0.66x, 0.60-0.67){mark}")
        assert out.endswith(rf"\textsuperscript{{{latex._MARK_TEX[mark]}}}") and mark not in out.split("textsuperscript")[0]
