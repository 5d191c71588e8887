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
from dynconv_bench.registry import VARIANT_GROUP

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


def test_readme_example_is_short_enough():
    python, toml = readme_plugin_example()
    assert len(python.strip().splitlines()) + len(toml.strip().splitlines()) <= 40


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
    cmd = [sys.executable, "-m", "dynconv_bench.cli", "--plugin", str(tmp_path / "my_variant.py")]
    out = subprocess.run(cmd + ["variants"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^gated\s+example plugin", out, re.M)
    out = subprocess.run(cmd + ["convert", "cifar_resnet8", "gated", "temperature=3"], capture_output=True,
                         text=True, check=True).stdout
    assert "gated: converted 6 of 9 convs" in out


def test_installed_plugin_package_is_listed_converted_and_measured(tmp_path):
    """pip-install a plugin package from a temporary directory; its entry point is all it takes."""
    python, toml = readme_plugin_example()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "my_variant.py").write_text(python)
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "dynconv-bench-gated-example"
        version = "0.0.1"
        [tool.setuptools]
        py-modules = ["my_variant"]
        """) + toml)
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
