from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dynconv_bench
from dynconv_bench import UserError, Variant, get_variant, list_variants, load_plugin_file, register_variant
from dynconv_bench.models.registry import VARIANT_GROUP

README = Path(__file__).resolve().parents[1] / "README.md"
BUILTINS = {"static", "static-se", "condconv", "dyconv", "odconv", "kerneldna", "kernelwarehouse", "dcd"}


def readme_plugin_example() -> tuple[str, str]:
    """The Python and TOML blocks of the README's 'Add a variant' section."""
    section = README.read_text().split("## Add a variant", 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return python, toml


def test_builtins_are_registered_through_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=VARIANT_GROUP)}
    assert BUILTINS <= names
    assert BUILTINS <= set(list_variants())
    assert all(get_variant(n).name == n for n in BUILTINS)


def test_register_variant_requires_a_named_variant_subclass():
    with pytest.raises(TypeError, match="Variant subclass"):
        register_variant(object)  # type: ignore[arg-type]

    class Nameless(Variant):
        pass

    with pytest.raises(TypeError, match="must set the class attribute `name`"):
        register_variant(Nameless)


def test_readme_example_bounds_are_enforced_and_its_entry_point_names_the_class(tmp_path):
    python, toml = readme_plugin_example()
    assert len(python.strip().splitlines()) + len(toml.strip().splitlines()) <= 45  # stays a short example
    path = tmp_path / "my_variant.py"
    path.write_text(python)
    (name,) = load_plugin_file(path)
    cls = get_variant(name)
    key, target = re.search(r'^(\S+) = "my_variant:(\w+)"$', toml, re.M).groups()
    assert key == name and cls.__name__ == target
    low, high = cls.params["temperature"].min, cls.params["temperature"].max
    assert low is not None and high is not None  # the example shows both bounds
    assert cls(temperature=high).cfg["temperature"] == high
    with pytest.raises(UserError, match=f"above the maximum {high}"):
        cls(temperature=high + 1)
    with pytest.raises(UserError, match=f"below the minimum {low}"):
        cls(temperature=low - 1)


def _run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_importing_the_package_loads_no_plugin_and_architectures_load_on_first_use():
    out = _run_python("""\
        import sys, timm
        import dynconv_bench
        print(sorted(m for m in sys.modules if m.startswith("dynconv_bench_variants")))
        print(timm.is_model("kerneldna_resnet18"), timm.is_model("cifar_resnet8"))
        m = dynconv_bench.create_model("kerneldna_mobilenetv2_050", "static", num_classes=3)
        print(type(m).__name__, timm.is_model("kerneldna_resnet18"))
        """)
    assert out.splitlines() == ["[]", "False False", "EfficientNet True"]


def test_builtins_are_registered_only_through_their_entry_points():
    out = _run_python("""\
        from importlib.metadata import entry_points
        from dynconv_bench.models import registry
        eps = [ep for ep in entry_points(group=registry.VARIANT_GROUP) if ep.value.startswith("dynconv_bench_variants")]
        classes = [ep.load() for ep in eps]  # importing the modules registers nothing
        print(len(eps), len(registry._VARIANTS), sorted(c.__dict__.get("name", "") for c in classes))
        registry.list_variants()
        print(all(registry.get_variant(ep.name) is c and c.name == ep.name for ep, c in zip(eps, classes)))
        """)
    first, second = out.splitlines()
    assert first == f"{len(BUILTINS)} 0 {[''] * len(BUILTINS)}" and second == "True"


def test_the_core_names_no_variant_and_imports_no_plugin():
    core = Path(dynconv_bench.__file__).parent
    offenders = [str(p.relative_to(core)) for p in core.rglob("*.py")
                 if "dynconv_bench_variants" in p.read_text() or re.search(r"kerneldna_\w+", p.read_text())]
    assert offenders == []


def test_entry_point_name_is_the_variant_name_and_a_disagreeing_class_is_refused():
    from importlib.metadata import EntryPoint

    from dynconv_bench.models import registry

    class Named(Variant):
        name = "other"

    sys.modules["_registry_test_mod"] = type(sys)("_registry_test_mod")
    sys.modules["_registry_test_mod"].Named = Named
    sys.modules["_registry_test_mod"].Nameless = type("Nameless", (Variant,), {})
    with pytest.raises(TypeError, match="class name 'other' disagrees with its entry point name 'mine'"):
        registry._register_entry_point(EntryPoint("mine", "_registry_test_mod:Named", VARIANT_GROUP))
    registry._register_entry_point(EntryPoint("mine", "_registry_test_mod:Nameless", VARIANT_GROUP))
    assert get_variant("mine").name == "mine"


def test_installation_problems_name_undeclared_uninstalled_and_stale_entry_points(tmp_path):
    from importlib.metadata import EntryPoint

    from dynconv_bench.models.registry import ARCHITECTURE_GROUP, installation_problems

    assert installation_problems() == []  # this checkout is installed as it is
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(textwrap.dedent(f"""\
        [project.entry-points."{VARIANT_GROUP}"]
        alpha = "pkg.alpha:Alpha"
        beta = "pkg.beta:Beta"
        [project.entry-points."{ARCHITECTURE_GROUP}"]
        nets = "pkg.nets"
        """))
    folder = tmp_path / "pkg"
    folder.mkdir()
    for module in ("alpha", "beta", "nets", "gamma", "_private"):
        (folder / f"{module}.py").write_text("")
    installed = [EntryPoint("alpha", "pkg.alpha:Alpha", VARIANT_GROUP),
                 EntryPoint("beta", "pkg.beta:OldBeta", VARIANT_GROUP),
                 EntryPoint("nets", "pkg.nets", ARCHITECTURE_GROUP)]
    problems = installation_problems(pyproject, [folder], installed)
    assert problems == [
        f"entry point 'beta' is installed as pkg.beta:OldBeta but {pyproject} says pkg.beta:Beta: "
        "reinstall (pip install -e .)",
        f"{folder / 'gamma'}.py is not named by any installed entry point: add it to pyproject.toml and "
        "reinstall (pip install -e .)",
    ]
    problems = installation_problems(pyproject, [folder], installed[:1] + installed[2:])
    assert problems[0].startswith(f"{pyproject} declares {VARIANT_GROUP} entry point 'beta' (pkg.beta:Beta) "
                                  "but it is not installed") and len(problems) == 3


def test_plugin_file_registers_its_variant(tmp_path):
    python, _ = readme_plugin_example()
    path = tmp_path / "my_variant.py"
    path.write_text(python)
    added = load_plugin_file(path)
    assert added == ["gated"]
    model = dynconv_bench.create_model("cifar_resnet8", "gated", num_classes=10, temperature=5.0)
    assert len(model.dynconv_report.converted) == 6
    with pytest.raises(UserError, match="plugin file not found"):
        load_plugin_file(tmp_path / "missing.py")


def test_cli_plugin_flag_lists_and_converts(tmp_path):
    python, _ = readme_plugin_example()
    (tmp_path / "my_variant.py").write_text(python)
    cmd = [sys.executable, "-m", "dynconv_bench.cli.main", "--plugin", str(tmp_path / "my_variant.py")]
    out = subprocess.run(cmd + ["variants"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^gated\s+example plugin", out, re.M)
    out = subprocess.run(cmd + ["convert", "cifar_resnet8", "gated", "temperature=3"], capture_output=True,
                         text=True, check=True).stdout
    assert "gated: converted 6 of 9 convs" in out


def test_installed_plugin_package_is_listed_converted_and_measured(tmp_path):
    """pip-install the README plugin with docs/plugin-api.md's pyproject.toml; its entry point is all it takes."""
    python, toml = readme_plugin_example()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "my_variant.py").write_text(python)
    docs = (README.parent / "docs" / "plugin-api.md").read_text()
    pyproject = re.search(r"## A complete `pyproject.toml`.*?```toml\n(.*?)```", docs, re.S).group(1)
    assert toml.strip() in pyproject  # the README's entry point is the one the Plugin API page packages
    (pkg / "pyproject.toml").write_text(pyproject)  # the page's complete pyproject.toml, as it is
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(pkg)], check=True, capture_output=True)
    script = textwrap.dedent("""\
        import dynconv_bench as d
        assert "gated" in d.list_variants(), d.list_variants()
        m = d.create_model("cifar_resnet8", "gated", num_classes=10)
        print("converted", len(m.dynconv_report.converted))
        p = d.profile(m.eval(), input_size=(3, 32, 32))
        print("params", p.params, "macs", p.macs, "overhead", p.overhead_macs)
        """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "converted 6" in out.stdout
    macs = dict(zip(out.stdout.split()[2::2], out.stdout.split()[3::2]))
    assert int(macs["params"]) > 0 and int(macs["macs"]) > 0 and int(macs["overhead"]) > 0
