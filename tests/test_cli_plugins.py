"""The path of a plugin author: a suite file in the working folder, a plugin file that registers nothing, and
`run` naming the variants that come from plugins."""

from __future__ import annotations

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.models.registry import load_plugin_file, plugin_source

PLUGIN = '''
from dynconv_bench import Param, Variant, register_variant

@register_variant
class Plug(Variant):
    name = "plug-cli-test"
    params = {"policy": Param("blocks", type=str)}
'''
SUITE = 'backbones = ["cifar_resnet8"]\nvariants = ["static", "plug-cli-test"]\n[measure.params]\n'


def test_run_finds_a_suite_in_the_working_folder(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    (tmp_path / "wn.toml").write_text('backbones = ["cifar_resnet8"]\nvariants = ["static"]\n[measure.params]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["run", "wn", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "suite wn: 1 cells to run, 0 already done" in out and "variants from plugins" not in out  # built-ins
    assert main(["run", "wnn", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown suite 'wnn'" in err
    assert f"looked for wnn.toml in {tmp_path / 'suites'}, {tmp_path}, " in err


def test_a_plugin_file_that_registers_nothing_is_a_one_line_error(tmp_path, capsys) -> None:  # noqa: ANN001
    empty = tmp_path / "empty.py"
    empty.write_text("from dynconv_bench import Variant\n\n\nclass Forgotten(Variant):\n    name = 'forgotten'\n")
    assert main(["--plugin", str(empty), "variants"]) == 2
    err = capsys.readouterr().err
    assert err == (f"dynconv-bench: error: plugin file {empty} registered no variant: decorate a Variant subclass "
                   f"with @register_variant (see docs/plugin-api.md)\n")
    with pytest.raises(UserError, match="registered no variant"):
        load_plugin_file(empty)


def test_loading_a_plugin_file_twice_still_names_its_variant(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "plug.py"
    path.write_text(PLUGIN)
    assert load_plugin_file(path) == ["plug-cli-test"] == load_plugin_file(path)
    assert plugin_source("plug-cli-test") == str(path)
    assert plugin_source("static") is None and plugin_source("kerneldna") is None


def test_run_names_the_variants_from_plugins(tmp_path, capsys) -> None:  # noqa: ANN001
    plugin, suite = tmp_path / "plug.py", tmp_path / "s.toml"
    plugin.write_text(PLUGIN)
    suite.write_text(SUITE)
    assert main(["--plugin", str(plugin), "--db", str(tmp_path / "s.sqlite"), "run", str(suite), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"suite s: variants from plugins: plug-cli-test ({plugin})"
    assert main(["--db", str(tmp_path / "s.sqlite"), "run", "smoke", "--dry-run"]) == 0  # variants = ["*"]
    out = capsys.readouterr().out
    assert out.startswith(f"suite smoke: variants from plugins: plug-cli-test ({plugin})\n")
    assert "cifar_resnet20/plug-cli-test/params" in out


SHADOW = '''
from dynconv_bench import register_variant
from dynconv_bench_variants.static import Static

@register_variant
class NotODConv(Static):
    name = "odconv"
'''


def test_a_plugin_that_shadows_a_builtin_is_refused_or_labelled_never_stored_as_it(tmp_path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.models import registry

    builtins = dict(registry._VARIANTS)
    plugin, suite, db = tmp_path / "fake_odconv.py", tmp_path / "s.toml", tmp_path / "s.sqlite"
    plugin.write_text(SHADOW)
    suite.write_text('name = "s"\nbackbones = ["cifar_resnet8"]\nvariants = ["static", "odconv"]\n[measure.params]\n')
    run = ["--db", str(db), "run", str(suite), "--no-plots", "--no-progress"]
    assert main(["--plugin", str(plugin), *run]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "registers 'odconv', the name of a built-in" in err and "--allow-shadow" in err
    assert not db.exists()

    assert main(["--plugin", str(plugin), "--allow-shadow", *run]) == 0
    out = capsys.readouterr().out
    assert "odconv [plugin fake_odconv.py " in out and "note: variant odconv [plugin fake_odconv.py" in out
    registry._VARIANTS.update(builtins)  # a new process, without the plugin file
    assert main(run) == 0  # the built-in's cell is not "already done"
    out = capsys.readouterr().out
    assert "1 run, 1 already done" in out
    with ResultStore(db, readonly=True) as store:
        rows = {r["variant"]: r for r in store.rows()}
    sources = {v: r["environment"]["variant_source"] for v, r in rows.items()}
    assert sources["odconv"]["from"] == sources["static"]["from"] == "built-in"
    (label,) = [v for v in rows if v.startswith("odconv [")]
    assert sources[label]["from"] == "plugin file" and sources[label]["path"] == str(plugin.resolve())
    import hashlib

    assert sources[label]["sha256"] == hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert rows["odconv"]["values"]["total"] > rows[label]["values"]["total"]  # ODConv's own parameters


def test_an_edited_plugin_file_is_measured_again(tmp_path, capsys) -> None:  # noqa: ANN001
    plugin, suite, db = tmp_path / "plug.py", tmp_path / "s.toml", tmp_path / "s.sqlite"
    plugin.write_text(PLUGIN)
    suite.write_text(SUITE)
    run = ["--db", str(db), "--plugin", str(plugin), "run", str(suite), "--no-plots", "--no-progress"]
    assert main(run) == 0 and main(run) == 0
    assert "0 run, 2 already done" in capsys.readouterr().out
    plugin.write_text(PLUGIN + "\n# changed\n")
    assert main(run) == 0
    assert "1 run, 1 already done" in capsys.readouterr().out
