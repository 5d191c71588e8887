"""The LaTeX report (issue 36 item 4, issue 35 item 6): per backbone one table per kind of figure (cost, speed,
accuracy) with short headers and units, marks as superscripts explained in one line, the environment in comments,
every table within the text width of a two-column paper's table* (checked by pdflatex in the slow tier), labels
that compile whatever characters they hold, and figure paths that cannot break out of \\detokenize."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import load_suite
from dynconv_bench.reporting.escape import latex_text
from dynconv_bench.reporting.formats import latex, latex_cells
from dynconv_bench.reporting.marks import MARKS
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results

ROOT = Path(__file__).resolve().parents[1]
CPU_DB = ROOT / "results" / "cpu.sqlite"
TEXT_WIDTH_PT = 505.89  # 7 in: a two-column paper's \textwidth
NO_TEX = pytest.mark.skipif(shutil.which("pdflatex") is None,
                            reason="no TeX engine (apt-get install texlive-latex-recommended)")
# characters that broke pdflatex or hide text: separators, zero-width, BOM, full-width, controls, bidi, other scripts
HOSTILE_CHARS = ["\u2028", "\u2029", "\u200b", "\ufeff", "\uff1d", "\x1b", "\x00", "\x7f", "\x85", "\u202e",
                 "\u00ad", "\U000e0041", "\u53d8\u4f53", "\U0001f600", "\u0105", "\u00d0\u00fe", "\u00e9\u00c5\u00df",
                 "\u2212", "\t", "a_b&c%d#e~f^g{h}$i\\j|k", "\\input{/etc/hostname}", "^^5c^^7d", "x}}{{"]
BREAKOUT = "x}}\\input{/etc/hostname}{{"


def _smoke_cell(cell: dict, plugins: tuple = ()) -> dict:
    """Values of every kind the smoke suite measures, shaped like real ones (ratios per round, an A/A static)."""
    v, o = cell["variant"], cell["options"]
    k = 1.0 + (sum(map(ord, v)) % 37) / 10 if v != "static" else 1.0  # a slowdown per variant
    batch = o.get("batch_size", 1)
    ratio = 1.0 / k
    values = {
        "params": {"total": int(272_474 * (k if v != "kerneldna" else 0.33)), "deployed": {"total": int(272_474 * k)}},
        "macs": {"macs": int(41_300_000 * (1 + (k - 1) / 20)), "overhead_macs": int(41_300_000 * (k - 1) / 20)},
        "speed": {"throughput": 460.0 * batch / k, "latency_ms": 2.17 * k, "median_s": 0.00217 * k * batch,
                  "batch_size": batch, "threads": 1, "device": "cpu", "load_avg": 0.5, "cores": 2,
                  "baseline_ratio": ratio, "rounds": 3, "processes": 1, "process_ratios": [ratio],
                  "round_ratios": [[ratio * 0.97, ratio, ratio * 1.3 if v == "dyconv" else ratio * 1.02]]},
        "accuracy": {"top1": 60.0 + 3 * k + o.get("seed", 0), "num_classes": 10},
        "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d", "time_ms": 0.1 * i, "calls": 1}
                              for i in range(4)], "batch_size": 16},
    }[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "started": None, "finished": None,
            "environment": {"host": "box", "cpu_model": "Test CPU", "threads": 2, "torch": "2.x"}}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A store like the smoke suite's (every registered variant; params and MACs on two backbones, speed at b1
    and b16, one-seed accuracy and layers on cifar_resnet20), measured by `_smoke_cell`."""
    db = tmp_path_factory.mktemp("smoke") / "smoke.sqlite"
    run_suite(load_suite(ROOT / "suites" / "smoke.toml"), db, executor=LocalExecutor(fn=_smoke_cell), progress=False)
    return load_results(db, "smoke")


@pytest.fixture(scope="module")
def cpu() -> pd.DataFrame:
    return load_results(CPU_DB)


def _tables(tex: str) -> list[str]:
    return re.findall(r"\\begin\{table\*\}.*?\\end\{table\*\}", tex, re.S)


def _headers(table: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)&", re.search(r"\\toprule\n(.*?)\\\\\n\\midrule", table, re.S)[1])]


def _caption(table: str) -> str:
    return re.search(r"\\caption\{(.*)\}\n", table)[1]


def _rows(table: str) -> list[list[str]]:
    body = re.search(r"\\midrule\n(.*?)\\bottomrule", table, re.S)[1]
    return [[c.strip() for c in re.split(r"(?<!\\)&", row.removesuffix("\\\\").strip())]
            for row in body.strip().split("\\\\\n")]


# -- structure (fast) -------------------------------------------------------------------------------------------
def test_cpu_store_gives_one_table_per_kind_per_backbone_with_short_headers(cpu: pd.DataFrame) -> None:
    tex = render(cpu, "latex")
    tables = _tables(tex)
    assert "\\begin{table}" not in tex  # every table a table*: the full width of a two-column paper
    kinds = [re.match(r"(.*?): (cost|speed|accuracy|other figures) of every variant", _caption(t)).groups()
             for t in tables]
    assert {k for _, k in kinds} <= {"cost", "speed", "accuracy", "other figures"}
    tables = [t for t, (_, k) in zip(tables, kinds) if k != "other figures"]  # e.g. training seconds per epoch
    assert [(b, k) for b, k in kinds if k != "other figures"] == [("cifar\\_resnet20", "cost"), ("cifar\\_resnet20", "speed"),
                                          ("cifar\\_resnet20", "accuracy"), ("resnet18", "cost"),
                                          ("resnet18", "speed"), ("mobilenetv2\\_100", "cost"),
                                          ("mobilenetv2\\_100", "speed")]
    heads = [_headers(t) for t in tables]
    assert heads[0] == ["Variant", "Params (M)", "Deployed params (M)", "MACs (M)", "MAC overhead (\\%)"]
    assert heads[1] == ["Variant", "b1", "b16", "b64", "train b64", "b16 img/s"]
    assert heads[2] == ["Variant", "Top-1 digits (\\%)", "\\ensuremath{\\Delta} digits (pts)",
                        "Top-1 synthetic (\\%)", "\\ensuremath{\\Delta} synthetic (pts)"]
    assert "MACs (G)" in heads[3] and "Mem b16 (MiB)" in heads[3] and "Train mem b16 (MiB)" in heads[3]
    assert all(len(re.sub(r"\\[A-Za-z]+|[{}\\]", "", h)) <= 20 for hs in heads for h in hs)
    assert not any(", x:" in h or "lower is better" in h for hs in heads for h in hs)
    for t in tables:
        rows = _rows(t)
        assert [r[0] for r in rows][0] == "static" and {len(r) for r in rows} == {len(_headers(t))}
        assert t.count("{\\footnotesize ") <= 1  # at most one note line, no paragraph of footnotes
        inside = "\n".join(line for line in t.splitlines() if not line.startswith("\\label"))
        assert "environment" not in inside and "8c203a" not in inside and "Temperature" not in inside
    # the environment, the kinds' notes and each mark's full meaning: comments above the tables
    assert re.search(r"^% cifar_resnet20, speed; environment 8c203a: host vm", tex, re.M)
    assert all(line.startswith(("%", "\\label")) for line in tex.splitlines() if "8c203a" in line or "Temperature" in line)
    speed = _rows(tables[1])
    assert re.match(r"A/A \d\.\d\d \[", speed[0][1])  # static against itself (A/A): the noise floor
    assert re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\](\\textsuperscript\{.*\})?", speed[1][1])
    assert re.fullmatch(r"[\d,]+", speed[1][5])  # b16 img/s
    acc = _rows(tables[2])
    assert acc[0][1] == "96.20 \\ensuremath{\\pm} 0.70" and acc[0][2] == "-"
    assert re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\](\\textsuperscript\{\*\})?", acc[1][2])


def test_marks_are_superscripts_explained_in_one_line(cpu: pd.DataFrame, smoke: pd.DataFrame) -> None:
    for frame in (cpu, smoke):
        for t in _tables(render(frame, "latex")):
            marks = set(re.findall(r"\\textsuperscript\{((?:[^{}]|\{\})*)\}", t.split("\\bottomrule")[0]))
            note = t.split("\\bottomrule")[1]
            for mark in marks:
                for piece in re.findall(r"\\[A-Za-z]+\{\}|\\textasciitilde\{\}|.", mark):
                    assert f"\\textsuperscript{{{piece}}}" in note, (piece, note)
            assert note.count("\\par}") <= 1
    smoke_tex = render(smoke, "latex")
    assert "\\textsuperscript{\\S{}}" in smoke_tex  # dyconv's wide interval
    assert any(line.startswith(f"% mark §: {MARKS['§'][:30]}") for line in smoke_tex.splitlines())


def test_smoke_store_gives_cost_speed_accuracy_tables_that_fit(smoke: pd.DataFrame) -> None:
    tex = render(smoke, "latex")
    kinds = [re.match(r"(.*?): (\w+)", _caption(t)).groups() for t in _tables(tex)]
    assert [k for k in kinds if k[1] != "other"] == [("cifar\\_resnet20", "cost"), ("cifar\\_resnet20", "speed"), ("cifar\\_resnet20", "accuracy"),
                     ("resnet18", "cost")]
    assert _headers(_tables(tex)[1]) == ["Variant", "b1", "b16", "b16 img/s"]
    assert _headers(_tables(tex)[2]) == ["Variant", "Top-1 digits (\\%)", "\\ensuremath{\\Delta} digits (pts)"]
    variants = set(smoke["variant"])
    assert {r[0] for r in _rows(_tables(tex)[0])} == {latex_text(v) for v in variants}


@pytest.mark.parametrize("store", ["cpu", "smoke"])
def test_every_table_fits_the_width_by_estimate(store: str, request: pytest.FixtureRequest) -> None:
    """The estimate `split` uses stays within the text width (pdflatex measures it in the slow tier)."""
    frame = request.getfixturevalue(store)
    from dynconv_bench.reporting.report import build_report

    report = build_report(frame)
    for p in report.parts:
        for b, t in p.boards.items():
            rows = p.section.rows[p.section.rows["backbone"] == b]
            for tex in latex.backbone_tables(b, t, rows, p, ""):
                assert "\\begin{tabular}" in tex
    wide = [latex_cells.Column(f"column {i}", ["1.00 [0.99, 1.01]"]) for i in range(12)]
    parts = latex.split(wide, latex_cells.Column("Variant", ["kernelwarehouse"]))
    assert len(parts) > 1 and sum(map(len, parts)) == 12
    assert all(latex_cells.Column("Variant", ["kernelwarehouse"]).width + sum(c.width for c in p) <= TEXT_WIDTH_PT
               for p in parts)


# -- escaping (fast) --------------------------------------------------------------------------------------------
def test_latex_text_writes_only_printable_ascii() -> None:
    for text in HOSTILE_CHARS:
        out = latex_text(f"v{text}w")
        assert all(" " <= c <= "~" for c in out), (text, out)
        assert "\\input" not in out and "^^" not in out.replace("\\textasciicircum{}", "")
    assert latex_text("\u2028\u200b\ufeff\uff1d") == ("\\textbackslash{}u2028\\textbackslash{}u200b"
                                                      "\\textbackslash{}ufeff\\textbackslash{}uff1d")
    assert latex_text("\x1b[31m\u202e\U0001f600") == "\\textbackslash{}x1b[31m\\textbackslash{}u202e" \
                                                     "\\textbackslash{}U0001f600"
    assert latex_text("é Å ß ą ± Δ") == "\\'{e} \\AA{} \\ss{} \\textbackslash{}u0105 \\ensuremath{\\pm} " \
                                        "\\ensuremath{\\Delta}"
    assert latex_text("a_b&c%d#e~f^g{h}$i\\j|k\nl") == ("a\\_b\\&c\\%d\\#e\\textasciitilde{}f\\textasciicircum{}g"
                                                        "\\{h\\}\\$i\\textbackslash{}j\\textbar{}k l")


def test_hostile_labels_render_as_printable_ascii(smoke: pd.DataFrame) -> None:
    names = {v: f"{v}{HOSTILE_CHARS[i % len(HOSTILE_CHARS)]}" for i, v in enumerate(sorted(set(smoke["variant"])))
             if v != "static"}
    tex = render(smoke.assign(variant=smoke["variant"].map(lambda v: names.get(v, v))), "latex")
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert all(" " <= c <= "~" for c in body.replace("\n", "")), sorted({c for c in body if not " " <= c <= "~"})
    assert re.search(r"(?<!textbackslash\{\})\\input", body) is None  # the labels' \input is text
    assert all(line.startswith("% ") for line in tex.splitlines() if "\\input" in line and line not in body)
    assert "\x1b" not in tex and "\u2028" not in tex and "\x00" not in tex  # the comments show them escaped too
    first = [r[0] for t in _tables(tex)[:1] for r in _rows(t)]
    assert len(first) == len(set(smoke["variant"]))  # a label's characters split no row


def test_a_figure_path_that_would_break_out_of_detokenize_is_refused(smoke: pd.DataFrame, tmp_path: Path) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    def png(folder: Path) -> Path:
        folder.mkdir(parents=True)
        info = PngInfo()
        info.add_text("Backbone", "cifar_resnet20")
        info.add_text("Title", "speed")
        Image.new("RGB", (4, 4)).save(folder / "speed.png", pnginfo=info)
        return folder / "speed.png"

    ok = png(tmp_path / "plots ok")
    tex = render(smoke, "latex", images=[ok])
    assert f"\\includegraphics[width=\\linewidth]{{\\detokenize{{{ok.resolve().as_posix()}}}}}" in tex
    bad = png(tmp_path / BREAKOUT)
    with pytest.raises(UserError) as err:
        render(smoke, "latex", images=[bad])
    assert "\n" not in str(err.value) and "cannot name the figure" in str(err.value)
    for char in "{}\\%#^~$&\"\x1b\u2028é":
        with pytest.raises(UserError):
            latex.graphics_path(Path(f"/tmp/a{char}b.png"))
    # the figure's title and caption are text
    assert "\\input" not in latex.figure(ok, BREAKOUT, BREAKOUT).replace("\\textbackslash{}input", "")


def test_every_leaderboard_mark_has_a_latex_form_and_leaves_the_value_text() -> None:
    assert set(MARKS) <= set(latex_cells._MARK_TEX)
    for mark in MARKS:
        out = latex_cells.cell(f"2.41 (0.66x, 0.60-0.67){mark}")
        assert out.endswith(rf"\textsuperscript{{{latex_cells._MARK_TEX[mark]}}}")
        assert mark not in out.split("textsuperscript")[0]
    assert latex_cells.cell("-1.94 [-3.1, +0.2] *") == "-1.94 [-3.1, +0.2]\\textsuperscript{*}"
    assert latex_cells.cell("2.20 (1.02x)!~") == "2.20 (1.02x)\\textsuperscript{!\\textasciitilde{}}"


# -- pdflatex (slow) --------------------------------------------------------------------------------------------
DOC = ("\\documentclass[twocolumn]{{article}}\n{fonts}\\usepackage[textwidth=7in]{{geometry}}\n"
       "\\usepackage{{booktabs}}\n\\usepackage{{graphicx}}\n\\begin{{document}}\n"
       "\\typeout{{TEXTWIDTH=\\the\\textwidth}}\n\\input{{{name}}}\n\\end{{document}}\n")


def compile_report(tex: str, folder: Path, name: str, fonts: str = "\\usepackage[T1]{fontenc}\n") -> str:
    """The pdflatex log of a two-column document (7 in text width) that \\inputs `tex`; fails on an error."""
    (folder / f"{name}.tex").write_text(tex, encoding="utf-8")
    doc = folder / f"doc-{name}.tex"
    doc.write_text(DOC.format(fonts=fonts, name=f"{name}.tex"), encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    log = (folder / f"doc-{name}.log").read_text(encoding="utf-8", errors="replace")
    assert run.returncode == 0, log[-3000:]
    assert "TEXTWIDTH=505.89pt" in log
    return log


def overfull(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


@pytest.mark.slow
@NO_TEX
def test_the_shipped_suites_reports_fit_a_two_column_page(cpu: pd.DataFrame, smoke: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    for name, frame in (("cpu", cpu), ("smoke", smoke)):
        log = compile_report(render(frame, "latex"), tmp_path, name)
        assert [w for w in overfull(log) if w > 1.0] == [], name
        assert (tmp_path / f"doc-{name}.pdf").stat().st_size > 1000


@pytest.mark.slow
@NO_TEX
@pytest.mark.parametrize("fonts", ["", "\\usepackage[T1]{fontenc}\n"], ids=["OT1", "T1"])
def test_hostile_labels_compile(smoke: pd.DataFrame, tmp_path: Path, fonts: str) -> None:
    variants = sorted(set(smoke["variant"]) - {"static"})
    frames = []
    for start in range(0, len(HOSTILE_CHARS), len(variants)):  # every hostile text in some variant's label
        chars = HOSTILE_CHARS[start:start + len(variants)]
        names = {v: f"{v}{c}" for v, c in zip(variants, chars)}
        frames.append(smoke.assign(variant=smoke["variant"].map(lambda v, n=names: n.get(v, v))))
    for i, frame in enumerate(frames):
        log = compile_report(render(frame, "latex"), tmp_path, f"hostile{i}", fonts)
        assert "(/etc/hostname" not in log  # TeX logs each file it opens as "(path": nothing was read
        assert "not set up for use with LaTeX" not in log
