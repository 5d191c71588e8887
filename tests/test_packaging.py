"""A non-editable install (a wheel, the GPU machine's offline install) carries every package folder."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: ROOT / path for name, path in config["package-dir"].items()}
    listed = set(config["packages"])
    found = set()
    for top in ("dynconv_bench", "dynconv_bench_variants"):
        for init in dirs[top].rglob("__init__.py"):
            rel = init.parent.relative_to(dirs[top])
            found.add(".".join((top, *rel.parts)))
    assert found - listed == set(), "package folders missing from [tool.setuptools] packages"
    assert listed - found == set(), "listed packages without a folder"
