"""Issue 35 (A): nothing is written through a symbolic link to a file that is not ours, and no output replaces one
of the command's inputs. Every refusal is one line and exit 2, and the foreign file keeps its bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.files import make_folder, replacing, write_atomic

from .test_hostile import one_line_exit_2

FOREIGN = b"root:x:0:0:root:/root:/bin/bash\n"  # a file of another program (as /etc/passwd)
RELEASE = Path(__file__).parent / "fixtures" / "published" / "odconv" / "mobilenetv2_050_1x.pt"
SUITE = 'name = "ln"\nbackbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.params]\n'
PLUGIN = '''
from dynconv_bench import Variant, register_variant

@register_variant
class LinksPlug(Variant):
    name = "links-test-plug"
'''


def fake_cell(cell: dict, plugins: tuple = ()) -> dict:
    """Params and a per-layer table (one figure per variant), without measuring."""
    values = {"params": {"total": 1000},
              "layers": {"layers": [{"layer": f"l{i}", "type": "Conv2d", "time_ms": 0.1 * i, "calls": 1}
                                    for i in range(4)]}}[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "environment": {"host": "box"},
            "started": None, "finished": None}


@pytest.fixture
def db(tmp_path: Path) -> str:
    suite = parse_suite({"name": "ln", "backbones": ["cifar_resnet8"], "variants": ["static"],
                         "measure": {"params": {}, "layers": {}}})
    run_suite(suite, tmp_path / "r.sqlite", executor=LocalExecutor(fn=fake_cell), progress=False)
    return str(tmp_path / "r.sqlite")


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A file that is not ours, outside the folders the commands write to."""
    path = tmp_path / "elsewhere" / "passwd"
    path.parent.mkdir()
    path.write_bytes(FOREIGN)
    return path


def link(tmp_path: Path, target: Path, name: str = "out.link") -> Path:
    path = tmp_path / name
    path.symlink_to(target)
    return path


def untouched(foreign: Path, link_path: Path | None = None) -> None:
    assert foreign.read_bytes() == FOREIGN
    if link_path is not None:
        assert link_path.is_symlink()  # the link itself is left as it was, too


# -- a symbolic link as an output: refused in one line, the target keeps its bytes ---------------------------
def test_import_output_that_is_a_link_is_refused(tmp_path: Path, foreign: Path, capsys) -> None:  # noqa: ANN001
    out = link(tmp_path, foreign, "model.pt")
    one_line_exit_2(["import", "odconv", str(RELEASE), "-o", str(out)], capsys, str(out), "symbolic link")
    untouched(foreign, out)


def test_report_output_that_is_a_link_is_refused(db: str, tmp_path: Path, foreign: Path, capsys) -> None:  # noqa: ANN001
    out = link(tmp_path, foreign, "report.md")
    for fmt in ("md", "csv", "html", "json"):
        one_line_exit_2(["--db", db, "report", "--format", fmt, "--no-plots", "-o", str(out)], capsys, str(out),
                        "symbolic link")
        untouched(foreign, out)


def test_export_output_that_is_a_link_is_refused(tmp_path: Path, foreign: Path, capsys) -> None:  # noqa: ANN001
    out = link(tmp_path, foreign, "model.onnx")
    one_line_exit_2(["export", "cifar_resnet8", "static", "-o", str(out)], capsys, str(out), "symbolic link")
    untouched(foreign, out)


def test_a_dangling_link_is_refused_and_nothing_is_created_at_its_target(tmp_path: Path, db: str, capsys) -> None:  # noqa: ANN001
    target = tmp_path / "elsewhere" / "new-file"
    target.parent.mkdir()
    out = link(tmp_path, target, "report.md")
    one_line_exit_2(["--db", db, "report", "-o", str(out)], capsys, "symbolic link")
    assert not target.exists() and out.is_symlink()


def test_a_link_planted_under_a_figure_name_is_refused(db: str, tmp_path: Path, foreign: Path, capsys) -> None:  # noqa: ANN001
    plots = tmp_path / "plots"
    assert main(["--db", db, "plot", "--out-dir", str(plots)]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in plots.iterdir())
    assert names and any(n.endswith(".png") for n in names)
    for name in (n for n in names if n.endswith((".png", ".svg"))):  # the names anyone can predict
        figure = plots / name
        figure.unlink()
        figure.symlink_to(foreign)
        one_line_exit_2(["--db", db, "plot", "--out-dir", str(plots)], capsys, str(figure), "symbolic link")
        untouched(foreign, figure)
        figure.unlink()
    assert main(["--db", db, "plot", "--out-dir", str(plots)]) == 0  # and with the links gone, all is well
    assert sorted(p.name for p in plots.iterdir()) == names


def test_a_plots_folder_that_is_a_link_is_refused(db: str, suite_file: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "config").write_bytes(FOREIGN)
    plots = link(tmp_path, elsewhere, "plots")
    one_line_exit_2(["--db", db, "plot", "--out-dir", str(plots)], capsys, str(plots), "symbolic link")
    one_line_exit_2(["--db", str(tmp_path / "new.sqlite"), "run", suite_file, "--plots-dir", str(plots),
                     "--dry-run"], capsys, str(plots), "symbolic link")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config"] and (elsewhere / "config").read_bytes() == FOREIGN
    assert not (tmp_path / "new.sqlite").exists()
    from dynconv_bench.reporting.plots import make_plots
    from dynconv_bench.reporting.rows import load_results

    with pytest.raises(UserError, match="symbolic link"):
        make_plots(load_results(db, "ln"), plots, "ln")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config"]


@pytest.fixture
def suite_file(tmp_path: Path) -> str:
    path = tmp_path / "ln.toml"
    path.write_text(SUITE)
    return str(path)


def test_write_atomic_replacing_and_checkpoints_never_follow_a_link(tmp_path: Path, foreign: Path) -> None:
    out = link(tmp_path, foreign)
    with pytest.raises(UserError, match="symbolic link"):
        write_atomic(out, "replaced")
    with pytest.raises(UserError, match="symbolic link"), replacing(out) as tmp:
        tmp.write_text("replaced")
    from dynconv_bench.training.loop import _save_checkpoint

    ck = link(tmp_path, foreign, "last.pt")
    with pytest.raises(UserError, match=f"checkpoint {ck} is a symbolic link"):
        _save_checkpoint(ck, {"epoch": 1, "w": torch.ones(2)})
    untouched(foreign, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "last.pt", "out.link"]  # no temporary left


def test_a_link_planted_during_the_write_is_replaced_not_followed(tmp_path: Path, foreign: Path) -> None:
    """Between the check and the rename: the rename replaces the link's name; the link's target keeps its bytes."""
    out = tmp_path / "report.md"
    with pytest.raises(UserError, match="symbolic link"), replacing(out) as tmp:  # refused by the second check
        tmp.write_text("ours")
        out.symlink_to(foreign)
    untouched(foreign, out)
    out.unlink()
    write_atomic(out, "ours")
    assert out.read_text() == "ours" and not out.is_symlink()


def test_make_folder_refuses_a_link_only_where_asked(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    plots = link(tmp_path, real, "plots")
    with pytest.raises(UserError, match=f"folder for the figures {plots} is a symbolic link"):
        make_folder(plots, "figures", no_link=True)
    assert make_folder(plots / "sub", "figures", no_link=True).is_dir()  # folders above the last are followed
    assert make_folder(plots, "checkpoint") == plots  # a checkpoint's parent folder: the user's own choice


def test_a_store_link_to_our_own_store_still_works(db: str, suite_file: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The results store keeps its own rule: a link to a dynconv-bench store is opened (store_schema.py)."""
    store = link(tmp_path, Path(db), "store.sqlite")
    assert main(["--db", str(store), "run", suite_file, "--dry-run"]) == 0
    assert "0 cells to run, 1 already done" in capsys.readouterr().out


# -- an output that is one of the command's inputs: refused, the input unchanged ------------------------------
def test_import_onto_its_own_input_is_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    src = tmp_path / "release.pt"
    src.write_bytes(RELEASE.read_bytes())
    before = src.read_bytes()
    one_line_exit_2(["import", "odconv", str(src), "-o", str(src)], capsys, "same file", str(src))
    hard = tmp_path / "hard.pt"
    os.link(src, hard)
    one_line_exit_2(["import", "odconv", str(src), "-o", str(hard)], capsys, "same file", str(hard))
    assert src.read_bytes() == before and hard.read_bytes() == before


def test_report_onto_its_store_is_refused(db: str, capsys) -> None:  # noqa: ANN001
    before = Path(db).read_bytes()
    for fmt in ("md", "csv"):
        one_line_exit_2(["--db", db, "report", "--format", fmt, "-o", db], capsys, "same file", "results store")
    assert Path(db).read_bytes() == before


def test_report_onto_a_figure_it_embeds_is_refused(db: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    plots = tmp_path / "plots"
    assert main(["--db", db, "plot", "--out-dir", str(plots)]) == 0
    capsys.readouterr()
    png = next(p for p in sorted(plots.iterdir()) if p.suffix == ".png")
    before = png.read_bytes()
    one_line_exit_2(["--db", db, "report", "--format", "html", "--plots-dir", str(plots), "-o", str(png)], capsys,
                    "same file", "figure")
    assert png.read_bytes() == before


def test_run_with_its_suite_file_as_the_store_is_refused(suite_file: str, capsys) -> None:  # noqa: ANN001
    before = Path(suite_file).read_bytes()
    for extra in (["--dry-run"], ["--no-progress", "--no-plots"]):
        one_line_exit_2(["--db", suite_file, "run", suite_file, *extra], capsys, "same file", "suite file")
    assert Path(suite_file).read_bytes() == before


def test_export_onto_a_plugin_file_is_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    plugin = tmp_path / "links_plug.py"
    plugin.write_text(PLUGIN)
    one_line_exit_2(["--plugin", str(plugin), "export", "cifar_resnet8", "static", "-o", str(plugin)], capsys,
                    "same file", "plugin")
    assert plugin.read_text() == PLUGIN


def test_check_not_input(tmp_path: Path) -> None:
    from dynconv_bench.files import check_not_input

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    check_not_input(b, [("input", a)])  # a new output
    b.write_text("b")
    check_not_input(b, [("input", a), ("missing", tmp_path / "nope"), ("none", None)])
    os.unlink(b)
    b.symlink_to(a)
    with pytest.raises(UserError, match=f"output {b} is the same file as the input {a}"):
        check_not_input(b, [("input", a)])
