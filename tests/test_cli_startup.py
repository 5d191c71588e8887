"""`dynconv-bench --help` starts without torch, timm or pandas; the package's public names still resolve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "pandas", "matplotlib")


def _modules_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_package() -> None:
    assert _modules_after("from dynconv_bench.cli.main import build_parser\nbuild_parser()") == []
    assert _modules_after("import dynconv_bench\nimport dynconv_bench.errors") == []


def test_help_answers_without_torch() -> None:
    code = ("import runpy, sys\nsys.argv = ['dynconv-bench', '--help']\n"
            "try:\n    runpy.run_module('dynconv_bench.cli', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code")
    assert _modules_after(code) == []


def test_public_names_load_on_first_use() -> None:
    import dynconv_bench

    assert callable(dynconv_bench.create_model) and "static" in dynconv_bench.list_variants()
    assert set(dynconv_bench.__all__) <= set(dir(dynconv_bench))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        dynconv_bench.nope  # noqa: B018
