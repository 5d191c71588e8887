"""Imports run one way: models <- metrics <- measures <- execution <- reporting <- cli, read from the source.

Every `import` of a dynconv_bench module counts, at the top of a file or inside a function (a lazy import is
still a dependency); imports under `if TYPE_CHECKING:` do not run and do not count.
"""

from __future__ import annotations

import ast
import re
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


def _package_of(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _import_target(package: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` in `package` reads from."""
    base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported dynconv_bench module, at the top of the file) for every import the file runs."""
    package = _package_of(path)
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                target = _import_target(package, child)
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
    found = dict(imports_of(PACKAGE / "metrics" / "step_memory.py"))
    assert found["dynconv_bench.models.modelspec"] is True
    assert found["dynconv_bench.errors"] is True
    nested = dict(imports_of(PACKAGE / "execution" / "processes" / "workers.py"))  # `...` from a subpackage
    assert nested["dynconv_bench.measures"] is True and nested["dynconv_bench.execution.processes.isolate"] is True
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


# -- calls by name: a fresh interpreter imports the function it runs by its module and qualname ---------------
# No import arrow shows such a call, so it is checked here: the function handed to `run_isolated` is always one
# at or below the floor of the module handing it over, and so is every module that code kept in a string (a
# child's boot lines) imports.
BY_NAME = {"run_isolated"}  # calls whose first argument a child process imports by module and qualname
_CODE_IMPORT = re.compile(r"^\s*(?:from|import)\s+(dynconv_bench(?:\.\w+)*)", re.MULTILINE)


def functions_called_by_name(path: Path) -> list[tuple[str, str]]:
    """(name, the module it comes from) of every function a BY_NAME call in the file hands over: "(argument)"
    for one the enclosing function was given (its caller named it, with an import checked above), "(unknown)"
    where the file does not say."""
    here, package = _module_name(path), _package_of(path)
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    imported = {a.asname or a.name: _import_target(package, n) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) for a in n.names}
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, params: frozenset[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = params
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = params | {a.arg for a in ast.walk(child.args) if isinstance(a, ast.arg)}
            callee = getattr(child, "func", None)
            if isinstance(child, ast.Call) and getattr(callee, "id", getattr(callee, "attr", None)) in BY_NAME:
                for n in ast.walk(child.args[0]) if child.args else ():
                    if isinstance(n, ast.Name):
                        found.append((n.id, "(argument)" if n.id in params else here if n.id in defined
                                      else imported.get(n.id, "(unknown)")))
            visit(child, inner)

    visit(tree, frozenset())
    return found


def imports_in_strings(path: Path) -> list[str]:
    """dynconv_bench modules that code kept in the file's strings (not its docstrings) imports."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [m for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs for m in _CODE_IMPORT.findall(n.value)]


def test_the_scan_sees_the_calls_by_name() -> None:
    processes = PACKAGE / "execution" / "processes"
    assert functions_called_by_name(processes / "workers.py") == [
        ("_worker", "dynconv_bench.execution.processes.workers")]
    assert sorted(functions_called_by_name(PACKAGE / "execution" / "executors.py")) == [
        ("default_fn", "dynconv_bench.execution.executors"), ("fn", "(argument)")]
    assert imports_in_strings(processes / "isolate.py") == ["dynconv_bench.execution.processes.isolate"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_calls_a_later_layer_by_name(path: Path) -> None:
    here = _module_name(path)
    own = _layer(here)
    named = [(fn, module) for fn, module in functions_called_by_name(path) if module != "(argument)"]
    assert [fn for fn, module in named if module == "(unknown)"] == [], f"{here}: where do these come from?"
    later = sorted({f"{module}.{fn}" for fn, module in named if own is not None and (_layer(module) or 0) > own})
    later += sorted({m for m in imports_in_strings(path) if own is not None and (_layer(m) or 0) > own})
    assert later == [], f"{here} (layer {own}) has a later layer's code run by name"
