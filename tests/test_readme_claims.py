"""The README's figures are what its two generator commands recompute (`python scripts/readme_speed.py` from the
results store, `python scripts/readme_tables.py` by counting), and what it says the default test command runs is
what pyproject.toml and .ci/run make it run. Prose that nothing here can recompute (the measured test times) is
not checked."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
import tomllib

import dynconv_bench as dcb
from dynconv_bench.metrics import count_deployed_params, count_params

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _script(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _between(start: str, end: str) -> str:
    return README[README.index(start) + len(start):README.index(end)]


def test_readme_lists_the_suites_verb_and_every_shipped_suite() -> None:
    assert "dynconv-bench suites" in README
    for path in sorted((ROOT / "suites").glob("*.toml")):
        assert f"`{path.stem}`" in README, path.stem


def test_the_speed_table_is_what_readme_speed_reads_from_the_results_store() -> None:
    """Every ratio, range, strategy count, date, run id and load in the README's speed table is the store's."""
    speed = _script("readme_speed")
    table = speed.table(ROOT / "results" / "cpu.sqlite", "cpu", "resnet18")
    assert _between(speed.START, speed.END) == f"\n{table}\n", "rerun: python scripts/readme_speed.py"


def test_the_variants_tables_params_are_the_counted_ones() -> None:
    """The params and deployed-params columns of every variant row, counted again (the fast half of the next test)."""
    table = _between("<!-- variants-table:start -->", "<!-- variants-table:end -->")
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    shown = {r[0].strip("| `"): (r[3], r[4]) for r in rows if r[0].strip("| `") in dcb.list_variants()}
    assert sorted(shown) == sorted(dcb.list_variants())  # one row per registered variant
    for name, (params, deployed) in shown.items():
        model = dcb.create_model("resnet18", name, num_classes=1000).eval()
        counted = (f"{count_params(model)['total'] / 1e6:.2f}M", f"{count_deployed_params(model)['total'] / 1e6:.2f}M")
        assert (params, deployed) == counted, name


@pytest.mark.slow  # profiles every variant and KernelDNA architecture at 224x224 (~30 s)
def test_the_variants_tables_are_what_readme_tables_counts() -> None:
    """Both tables and the sentence above them (its trained- and deployed-form MACs of KernelDNA's ResNet-18)."""
    tables = _script("readme_tables")
    assert tables.START + _between(tables.START, tables.END) + tables.END == tables.block(), (
        "rerun: python scripts/readme_tables.py")


def test_the_default_test_command_is_what_the_readme_says() -> None:
    """`python -m pytest` runs every test not marked slow or gpu, on every core (-n auto in pyproject.toml), and
    `.ci/run` runs exactly that command."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    args = shlex.split(options["addopts"])
    marker = args[args.index("-m") + 1]
    assert f"A `-m` on the command line replaces the default `-m '{marker}'` of pyproject.toml." in README
    assert marker == "not slow and not gpu"  # the README's "every test not marked `slow` or `gpu`"
    assert args[args.index("-n") + 1] == "auto" and "(`-n auto` in pyproject.toml" in README
    assert "The default test run (`python -m pytest`: every test not marked `slow` or `gpu`)" in README
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1].split("&&")[-1].strip() == "python -m pytest"
