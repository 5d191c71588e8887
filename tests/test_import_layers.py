"""Imports run one way: models <- metrics <- measures <- execution <- reporting <- cli, read from the source.

Every `import` of a dynconv_bench module counts, at the top of a file or inside a function (a lazy import is
still a dependency); imports under `if TYPE_CHECKING:` do not run and do not count.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dynconv_bench"
LAYER = {"errors": 0, "files": 0, "lazy": 0, "discovery": 0, "config_text": 0, "untrusted": 0, "models": 1,
         "metrics": 2, "data": 2, "training": 2, "measures": 3, "execution": 4, "reporting": 5, "cli": 6}
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


def test_every_room_has_a_floor() -> None:
    """A room missing from LAYER would escape every check below (its imports and its callers unchecked)."""
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert sorted(rooms - set(LAYER)) == []


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
# No import arrow shows such a call, so it is checked here. The rule: a function run by name sits at or below the
# floor of the module that names it AND of the launcher that imports it by name (`run_isolated`, handed the
# function; the DDP `launch`, handed a "module:function" string), exactly as if the launcher imported it. The
# launcher's own import by name is of a name handed to it (an argument), so it is checked at the call sites that
# name a target: a floor-3 target handed to a floor-2 launcher is a call up the floors even though its caller
# sits on floor 3. A function that hands on a function it was given ("(argument)") names nothing itself: its
# caller named it, with an import checked above. Every "module:function" string a module holds (not its
# docstrings) names a target at or below its own floor, and so is every module that code kept in a string
# (a child's boot lines) imports.
BY_NAME = {"run_isolated", "launch"}  # calls whose first argument a child process imports by module and qualname
_CODE_IMPORT = re.compile(r"^\s*(?:from|import)\s+(dynconv_bench(?:\.\w+)*)", re.MULTILINE)
_TARGET = re.compile(r"^(dynconv_bench(?:\.\w+)*):(\w+(?:\.\w+)*)$")  # a launcher's "module:function"


def _named_target(node: ast.expr, here: str) -> tuple[str, str] | None:
    """(function, module) a "module:function" string names: a constant, or f"{__name__}:function"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        found = _TARGET.match(node.value)
        return (found[2], found[1]) if found else ("(unknown)", "(unknown)")
    if isinstance(node, ast.JoinedStr):
        parts = node.values
        if (len(parts) == 2 and isinstance(parts[0], ast.FormattedValue)
                and getattr(parts[0].value, "id", None) == "__name__" and isinstance(parts[1], ast.Constant)
                and re.fullmatch(r":\w+(?:\.\w+)*", str(parts[1].value))):
            return str(parts[1].value)[1:], here
        return "(unknown)", "(unknown)"
    return None


def functions_called_by_name(path: Path) -> list[tuple[str, str, str]]:
    """(function, the module it comes from, the launcher's module) for every function a BY_NAME call in the file
    hands over: "(argument)" for one the enclosing function was given (its caller named it), "(unknown)" where
    the file does not say."""
    here, package = _module_name(path), _package_of(path)
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    imported = {a.asname or a.name: _import_target(package, n) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) for a in n.names}
    found: list[tuple[str, str, str]] = []

    def source(name: str, params: frozenset[str]) -> str:
        return "(argument)" if name in params else here if name in defined else imported.get(name, "(unknown)")

    def visit(node: ast.AST, params: frozenset[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = params
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = params | {a.arg for a in ast.walk(child.args) if isinstance(a, ast.arg)}
            callee = getattr(child, "func", None)
            if isinstance(child, ast.Call) and isinstance(callee, ast.Name) and callee.id in BY_NAME and child.args:
                launcher = here if callee.id in defined else imported.get(callee.id, "(unknown)")
                named = _named_target(child.args[0], here)
                if named is not None:
                    found.append((*named, launcher))
                else:
                    found.extend((n.id, source(n.id, params), launcher) for n in ast.walk(child.args[0])
                                 if isinstance(n, ast.Name))
            elif isinstance(child, ast.Call) and getattr(callee, "attr", None) in BY_NAME:
                found.append(("(unknown)", "(unknown)", "(unknown)"))  # `x.launch(...)`: import the launcher by name
            visit(child, inner)

    visit(tree, frozenset())
    return found


def _strings(path: Path) -> list[str]:
    """The file's string constants that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def imports_in_strings(path: Path) -> list[str]:
    """dynconv_bench modules that code kept in the file's strings (not its docstrings) imports."""
    return [m for text in _strings(path) for m in _CODE_IMPORT.findall(text)]


def targets_in_strings(path: Path) -> list[str]:
    """dynconv_bench modules whose functions the file's "module:function" strings name (a launcher's target)."""
    return [found[1] for text in _strings(path) if (found := _TARGET.match(text))]


def called_up_by_name(path: Path) -> list[str]:
    """What the file has run by name against the rule above (a function above its own or its launcher's floor)."""
    here = _module_name(path)
    own = _layer(here)
    if own is None:
        return []
    named = [(fn, module, launcher) for fn, module, launcher in functions_called_by_name(path)
             if module != "(argument)"]
    unknown = [f"{fn} (from {module}, run by {launcher}: where?)" for fn, module, launcher in named
               if "(unknown)" in (module, launcher)]
    later = [f"{module}.{fn} (layer {_layer(module)}, run by {launcher}, layer {_layer(launcher)})"
             for fn, module, launcher in named if "(unknown)" not in (module, launcher)
             and (_layer(module) or 0) > min(own, _layer(launcher) or 0)]
    later += [f"{m} (imported by code in a string)" for m in imports_in_strings(path) if (_layer(m) or 0) > own]
    later += [f"{m} (named by a 'module:function' string)" for m in targets_in_strings(path)
              if (_layer(m) or 0) > own]
    return sorted(set(unknown + later))


def test_the_scan_sees_the_calls_by_name() -> None:
    processes = PACKAGE / "execution" / "processes"
    isolate, ddp = "dynconv_bench.execution.processes.isolate", "dynconv_bench.execution.processes.ddp_launch"
    assert functions_called_by_name(processes / "workers.py") == [
        ("_worker", "dynconv_bench.execution.processes.workers", isolate)]
    assert sorted(functions_called_by_name(PACKAGE / "execution" / "executors.py")) == [
        ("default_fn", "dynconv_bench.execution.executors", isolate), ("fn", "(argument)", isolate)]
    assert functions_called_by_name(processes / "ddp_launch.py") == [("_rank", ddp, ddp)]
    assert imports_in_strings(processes / "isolate.py") == [isolate]
    assert imports_in_strings(processes / "ddp_launch.py") == [ddp]


def test_the_rule_flags_a_target_above_its_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old pattern: a floor-3 kind handed its own function to training.distributed.launch (floor 2), which
    imported it by name; so did a floor-2 module naming a floor-3 target in a string. Both are flagged."""
    root = tmp_path / "dynconv_bench"
    files = {
        "training/distributed.py": "def launch(target, payload, workers):\n    return {}\n",
        "training/names.py": 'TARGET = "dynconv_bench.measures.old_ddp:train_rank"\n',
        "measures/old_ddp.py": ("def measure_distributed(spec):\n"
                                "    from ..training.distributed import launch\n\n"
                                '    return launch(f"{__name__}:train_rank", {"spec": spec}, 2)\n\n\n'
                                "def train_rank(payload):\n    return {}\n"),
        "measures/old_ddp_string.py": ("from ..training.distributed import launch\n\n"
                                       'OUT = launch("dynconv_bench.measures.old_ddp:train_rank", {}, 2)\n'),
        "execution/cell_ddp.py": ("from ..training.distributed import launch\n\n"
                                  'OUT = launch("dynconv_bench.training.names:TARGET", {}, 2)\n'),
    }
    for name, text in {**files, "__init__.py": "", "training/__init__.py": "", "measures/__init__.py": "",
                       "execution/__init__.py": ""}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    up = "dynconv_bench.measures.old_ddp.train_rank (layer 3, run by dynconv_bench.training.distributed, layer 2)"
    assert called_up_by_name(root / "measures" / "old_ddp.py") == [up]
    assert called_up_by_name(root / "measures" / "old_ddp_string.py") == [up]
    assert called_up_by_name(root / "training" / "names.py") == [
        "dynconv_bench.measures.old_ddp (named by a 'module:function' string)"]
    assert called_up_by_name(root / "execution" / "cell_ddp.py") == []  # floor 2 target, floor 2 launcher


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_calls_a_later_layer_by_name(path: Path) -> None:
    assert called_up_by_name(path) == [], f"{_module_name(path)} (layer {_layer(_module_name(path))}) has code " \
                                          "above its floor or its launcher's run by name"
