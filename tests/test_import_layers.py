"""Imports run one way: models <- metrics <- measures <- execution <- reporting <- cli, read from the source.

Every `import` of a dynconv_bench module counts, at the top of a file or inside a function (a lazy import is
still a dependency); imports under `if TYPE_CHECKING:` do not run and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dynconv_bench"
LAYER = {"errors": 0, "files": 0, "lazy": 0, "discovery": 0, "config_text": 0, "models": 1, "metrics": 2, "data": 2,
         "training": 2, "measures": 3, "execution": 4, "reporting": 5, "cli": 6}
ALLOWED: set[tuple[str, str]] = set()  # (module, a later layer's module it may import): none


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported dynconv_bench module, at the top of the file) for every import the file runs."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                target = ".".join([*base, child.module] if child.module else base)
                if target.startswith("dynconv_bench"):  # `from . import x`: the module x where x is one
                    found.extend((f"{target}.{a.name}" if _exists(f"{target}.{a.name}") else target, top)
                                 for a in child.names)
            elif isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.startswith("dynconv_bench"))
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))

    visit(ast.parse(path.read_text()), True)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_the_parser_sees_relative_top_level_and_lazy_imports() -> None:
    found = dict(imports_of(PACKAGE / "metrics" / "memory.py"))
    assert found["dynconv_bench.metrics.isolate"] is True
    assert found["dynconv_bench.errors"] is True
    lazy = dict(imports_of(PACKAGE / "execution" / "suite_variants.py"))
    assert lazy["dynconv_bench.models.sites"] is False  # inside a function


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_layer(path: Path) -> None:
    here = _module_name(path)
    own = _layer(here)
    later = sorted({m for m, _ in imports_of(path)
                    if own is not None and (_layer(m) or 0) > own and (here, m) not in ALLOWED})
    assert later == [], f"{here} (layer {own}) imports later layers"


def test_imports_have_no_cycle() -> None:
    graph = {_module_name(p): {m for m, _ in imports_of(p)} for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}

    def cycle_from(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or nxt.startswith(node + "."):  # a package re-exporting its own modules
                continue
            if state.get(nxt) == 1:
                return [*stack, node, nxt]
            if nxt not in state and (found := cycle_from(nxt, [*stack, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            assert cycle_from(start, []) is None, "an import cycle"
