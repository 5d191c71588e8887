"""The five extension points (variant, measurement kind, report format, executor, release importer): each plugin in
tests/plugins/ is installed from outside the package, as a third-party distribution is (a dist-info whose
entry_points.txt names it, on sys.path; found by importlib.metadata through `dynconv_bench.discovery`), and the
command line or the API uses it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dynconv_bench.cli.main import main

ENTRY_POINTS = """\
[dynconv_bench.variants]
test-scaled = tests.plugins.scaled_variant:Scaled

[dynconv_bench.measures]
test_conv_count = tests.plugins.conv_count_kind

[dynconv_bench.formats]
test-lines = tests.plugins.lines_format

[dynconv_bench.executors]
test-counting = tests.plugins.counting_executor:CountingExecutor

[dynconv_bench.releases]
test-release = tests.plugins.toy_release
"""
PLUGIN_MODULES = [f"tests.plugins.{m}" for m in ("scaled_variant", "conv_count_kind", "lines_format",
                                                  "counting_executor", "toy_release")]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugins installed as the distribution `dynconv-bench-test-plugins`; every registry starts over and is
    restored afterwards."""
    from dynconv_bench.execution import executors
    from dynconv_bench.measures import base as kinds
    from dynconv_bench.models import registry
    from dynconv_bench.models.published import base as releases
    from dynconv_bench.reporting import formats

    for load in (registry.list_variants, kinds.list_kinds, formats.loaded_formats, executors._load_executors,
                 releases.list_pairs):  # the built-ins first: they stay registered, cached modules are not run again
        load()
    site = tmp_path / "site"
    dist = site / "dynconv_bench_test_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dynconv-bench-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    import tests.plugins

    for name in PLUGIN_MODULES:  # imported afresh: modules that register themselves do it again
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(tests.plugins, name.rsplit(".", 1)[1], raising=False)  # `from tests.plugins import x`
    for module, attrs in ((registry, ("_VARIANTS", "_PACKAGES")), (kinds, ("_KINDS", "_METRICS")),
                          (formats, ("_FORMATS",)), (executors, ("_EXECUTORS",)), (releases, ("_PAIRS", "_MODULES"))):
        for attr in attrs:
            monkeypatch.setattr(module, attr, dict(getattr(module, attr)))
    for module, flag in ((registry, "_entry_points_loaded"), (kinds, "_loaded"), (formats, "_loaded"),
                         (executors, "_executors_loaded"), (releases, "_releases_loaded")):
        monkeypatch.setattr(module, flag, False)
    yield tmp_path
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


SUITE = """\
name = "plugged"
backbones = ["cifar_resnet8"]
variants = ["static", "test-scaled"]

[measure.params]

[measure.test_conv_count]
"""


def _run(tmp_path: Path, *extra: str) -> int:
    suite = tmp_path / "plugged.toml"
    suite.write_text(SUITE)
    return main(["--db", str(tmp_path / "r.sqlite"), "run", str(suite), "--no-progress", "--no-plots", *extra])


def test_a_variant_from_an_entry_point_is_listed_built_and_labelled_with_its_package(installed: Path,
                                                                                      capsys) -> None:  # noqa: ANN001
    import dynconv_bench
    from dynconv_bench.models.registry import variant_source
    from tests.plugins.scaled_variant import ScaledConv

    assert "test-scaled" in dynconv_bench.list_variants()
    model = dynconv_bench.create_model("cifar_resnet8", "test-scaled", scale=3.0)
    assert any(isinstance(m, ScaledConv) and m.scale == 3.0 for m in model.modules())
    assert variant_source("test-scaled") == {"from": "entry point", "package": "dynconv-bench-test-plugins",
                                             "version": "0.1"}
    assert main(["variants"]) == 0
    assert "test-scaled" in capsys.readouterr().out


def test_a_kind_from_an_entry_point_is_measured_and_shown(installed: Path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.measures import list_kinds

    assert "test_conv_count" in list_kinds()
    assert _run(installed) == 0
    out = capsys.readouterr().out
    assert "suite plugged: 4 cells, 4 run" in out and "plain convs (count)" in out


def test_run_executor_names_a_plugin_and_runs_every_cell_through_it(installed: Path, capsys) -> None:  # noqa: ANN001
    from tests.plugins import counting_executor

    counting_executor.RAN.clear()
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "test-counting" in capsys.readouterr().out  # the choices come from the registry
    assert _run(installed, "--executor", "test-counting") == 0
    assert "4 cells, 4 run" in capsys.readouterr().out
    assert sorted(counting_executor.RAN) == sorted(["cifar_resnet8/static/params", "cifar_resnet8/test-scaled/params",
                                                    "cifar_resnet8/static/test_conv_count",
                                                    "cifar_resnet8/test-scaled/test_conv_count"])
    with pytest.raises(SystemExit):
        main(["run", "x.toml", "--executor", "nosuch"])
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_report_format_names_a_plugin_and_writes_its_output(installed: Path, capsys) -> None:  # noqa: ANN001
    from dynconv_bench.reporting.formats import get_format

    assert _run(installed) == 0
    capsys.readouterr()
    out = installed / "board.txt"
    assert main(["--db", str(installed / "r.sqlite"), "report", "--format", "test-lines", "-o", str(out)]) == 0
    assert out.read_text().splitlines() == ["LINES dynconv-bench leaderboard: suite plugged",
                                           "cifar_resnet8 static", "cifar_resnet8 test-scaled"]
    assert get_format("test-lines").suffix == "txt"
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "test-lines" in capsys.readouterr().out


def test_a_release_from_an_entry_point_is_imported_and_makes_its_fixtures(installed: Path, capsys) -> None:  # noqa: ANN001
    import dynconv_bench

    theirs = dynconv_bench.create_model("cifar_resnet8", "static", num_classes=10).state_dict()
    checkpoint, converted = installed / "toy.pth", installed / "ours.pt"
    torch.save(theirs, checkpoint)
    assert main(["import", "test-release", str(checkpoint), "-o", str(converted)]) == 0
    assert "test-release" in capsys.readouterr().out
    saved = torch.load(converted, weights_only=False)
    assert saved["arch"] == "r8" and all(torch.equal(saved["state_dict"][k], v) for k, v in theirs.items())

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import make_release_fixtures as script
    finally:
        sys.path.pop(0)
    makers = script.builders("test-release", "-")
    assert list(makers) == ["r8"]
    arch, classes, size, modules = script.release_fixtures("test-release").FIXTURE_CASES[0]
    case = script.make_case("test-release", arch, makers[arch], classes, size, modules)
    assert "fc.weight" in case["state_dict"]  # the release module's fixture_tensors was asked
    assert [c["release_module"] for c in case["cases"]] == ["layer1.0"]
    with pytest.raises(SystemExit, match="unknown release 'test-releas'"):
        script.release_fixtures("test-releas")


def test_the_plugin_page_lists_the_five_points_with_an_example_each_that_runs(installed: Path) -> None:
    import re

    from dynconv_bench import discovery
    from dynconv_bench.measures import list_kinds
    from dynconv_bench.models.published import releases

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugin-api.md").read_text()
    section = doc[doc.index("## Extension points"):doc.index("## Registration and naming")]
    groups = re.findall(r'\[project\.entry-points\."([\w.]+)"\]', section)
    assert groups == [discovery.VARIANT_GROUP, discovery.KIND_GROUP, discovery.FORMAT_GROUP,
                      discovery.EXECUTOR_GROUP, discovery.RELEASE_GROUP]
    for code in re.findall(r"```python\n(.*?)```", section, re.S):  # each runs (registries restored afterwards)
        exec(compile(code, "docs/plugin-api.md", "exec"), {})
    assert "conv_count" in list_kinds() and "toy" in releases()
