"""CLI `variants`, `convert` and global options: what a plugin author and a new user see."""

from __future__ import annotations

import json

import pytest

from dynconv_bench.cli import common as cli
from dynconv_bench.cli.main import main
from dynconv_bench.execution.store import ResultStore


def test_variants_text_shows_type_range_help_and_presets(capsys) -> None:  # noqa: ANN001
    assert main(["variants"]) == 0
    out = capsys.readouterr().out
    assert "    reduction        float = 0.0625, >= 1e-06, <= 1.0: attention width = max(int(C_in * reduction)" in out
    assert "    routing          str = 'layer', one of layer, block: 'layer': each conv routes" in out
    assert "    num_kernels      int or None = None, >= 1, <= 64: experts per layer" in out
    assert "    preset=paper: efficientnet_b0\n" in out
    assert "    preset=paper-4x: mobilenetv2_050, mobilenetv2_100, resnet18, resnet50\n" in out


def test_variants_json_has_every_key_described(capsys) -> None:  # noqa: ANN001
    assert main(["variants", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dyconv"]["params"]["anneal_fraction"] == {
        "type": "float", "default": 0.1, "min": 0.0, "max": 1.0,
        "help": "fraction of training over which the temperature goes linearly to 1 "
                "(anneal_unit=fraction; 0 keeps it constant)"}
    assert rows["kerneldna"]["params"]["parent"]["choices"] == ["first", "last"]
    assert rows["condconv"]["presets"] == {"paper": ["efficientnet_b0"]}
    assert rows["static"]["presets"] == {}
    for row in rows.values():
        assert set(row["params"]) == set(row["defaults"])
        assert all({"type", "default", "help"} <= set(p) for p in row["params"].values())


def test_variants_warns_when_installation_and_source_tree_disagree(capsys, monkeypatch) -> None:  # noqa: ANN001
    from dynconv_bench.models import registry

    monkeypatch.setattr(registry, "installation_problems", lambda: ["variants/new.py is not named by any entry point"])
    assert main(["variants"]) == 0
    err = capsys.readouterr().err
    assert err == "dynconv-bench: warning: variants/new.py is not named by any entry point\n"


def test_convert_uses_the_backbones_own_number_of_classes(capsys) -> None:  # noqa: ANN001
    assert main(["convert", "cifar_resnet8", "static"]) == 0
    assert "output (2, 10) for input (2, 3, 32, 32)" in capsys.readouterr().out
    assert main(["convert", "cifar_resnet8", "static", "--num-classes", "7"]) == 0
    assert "output (2, 7) for input (2, 3, 32, 32)" in capsys.readouterr().out


def test_convert_with_a_preset_and_an_override(capsys) -> None:  # noqa: ANN001
    assert main(["convert", "resnet18", "odconv", "preset=paper-4x", "num_kernels=2", "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    # paper layer choice (blocks: the 16 3x3 convs of the basic blocks, no shortcut), the override's K
    assert out.startswith("odconv: converted 16 of 20 convs (16 selected by policy 'blocks')")
    assert "output (2, 3)" in out


@pytest.mark.parametrize("argv, message", [
    (["convert", "resnet18", "condconv", "preset=paper"],
     "condconv: no 'paper' preset for backbone 'resnet18'; backbones with one: efficientnet_b0"),
    (["convert", "resnet18", "static", "preset=paper"], "static: unknown preset 'paper'; valid presets: (none)"),
    (["convert", "resnet18", "odconv", "preset=papr"], "odconv: unknown preset 'papr'; valid presets: paper, paper-4x"),
])
def test_preset_errors_are_one_line_exit_2(argv, message, capsys) -> None:  # noqa: ANN001
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"dynconv-bench: error: {message}\n"


def test_global_options_are_accepted_after_the_verb(tmp_path, write_suite, capsys, monkeypatch) -> None:  # noqa: ANN001
    suite, db = write_suite(), tmp_path / "late.sqlite"
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(suite), "--db", str(db), "--no-progress", "--no-plots"]) == 0
    with ResultStore(db) as store:
        assert store.count() == 2
    assert not (tmp_path / cli.DEFAULT_DB).exists()
    assert main(["report", "--db", str(db), "--format", "csv"]) == 0
    assert "static-se" in capsys.readouterr().out


def test_plugins_before_and_after_the_verb_are_all_loaded(tmp_path, capsys) -> None:  # noqa: ANN001
    seen: list[str] = []
    for name in ("one", "two", "three"):
        path = tmp_path / f"{name}.py"
        path.write_text(f"from dynconv_bench import Param, Variant, register_variant\n\n\n"
                        f"@register_variant\nclass V(Variant):\n    name = 'plugin-{name}'\n"
                        f"    params = {{'policy': Param('blocks', type=str)}}\n")
        seen.append(str(path))
    argv = ["--plugin", seen[0], "variants", "--plugin", seen[1], "--plugin", seen[2], "--format", "json"]
    assert main(argv) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert {"plugin-one", "plugin-two", "plugin-three"} <= names


def test_a_global_option_after_the_verb_keeps_argparse_errors_one_line(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["report", "--db"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "dynconv-bench: error: argument --db: expected one argument\n"


def test_output_cut_short_by_the_reader_is_not_an_error() -> None:
    """`dynconv-bench variants | head -1`: the closed pipe ends the command quietly, no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dynconv_bench.cli.main", "variants", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the command writes
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
