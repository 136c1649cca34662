"""The package's shape, read from its sources: no import circle, layers that import only downwards
(the model families below the organism), no private name imported from another module, no module
over 600 lines, no function over 80, every package saying what it holds, and no environment variable
set by importing it (the command line sets OpenMP's wait policy itself)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hearlib"
MAX_LINES = 600
MAX_FUNCTION_LINES = 80     # from `def` to the last line, decorators excluded
# package -> the hearlib packages it must never import (the layers above it)
NEVER = {
    "families": {"method", "records", "paper", "cli", "organism"},
    "method": {"records", "paper", "cli", "organism"},
    "records": {"paper", "cli", "organism"},
    "organism": {"paper", "cli"},
    "paper": {"cli"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only: never executed)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for statement in node.body for n in ast.walk(statement))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def imports(name: str) -> set[str]:
    """The hearlib modules ``name`` imports anywhere in its source, functions included."""
    found = set()
    for node in _runtime_nodes(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hearlib"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
    return {module for module in found if module in MODULES and module not in (name, "hearlib")}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    assert circles({name: imports(name) for name in MODULES}) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_import_only_downwards(name):
    forbidden = NEVER.get(_layer(name), set())
    assert not {m for m in imports(name) if _layer(m) in forbidden}, f"{name} imports a layer above it"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) == "families"))
def test_the_families_never_import_the_organism(name):
    """Not even inside a function or under TYPE_CHECKING: the organism builds on the families
    (their LLaVA template and test vocabulary), never the reverse."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    assert not {m for m in found if m == "hearlib.organism" or m.startswith("hearlib.organism.")}, name


def private_imports(name: str) -> list[str]:
    """``module.name`` of every leading-underscore name (dunders aside) that module ``name`` imports
    from another hearlib module (``from hearlib.x import _y``, anywhere in its source)."""
    found = []
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level:                      # a relative import, resolved against the importing package
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + ([module] if module else []))
        if not (module == "hearlib" or module.startswith("hearlib.")) or module == name:
            continue
        found += [f"{module}.{alias.name}" for alias in node.names
                  if alias.name.startswith("_") and not (alias.name.startswith("__") and alias.name.endswith("__"))]
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_imported_from_another_module(name):
    assert private_imports(name) == [], f"{name} imports private names of other modules"


def test_the_private_import_finder_finds_one(tmp_path, monkeypatch):
    source = ("from hearlib.method.attention import _blocked, ablation\n"
              "from hearlib import __version__\n"
              "def f():\n    from .fastpath import _take_rows\n")
    (tmp_path / "probe.py").write_text(source)
    monkeypatch.setitem(MODULES, "hearlib.method.probe", tmp_path / "probe.py")
    assert private_imports("hearlib.method.probe") == ["hearlib.method.attention._blocked",
                                                       "hearlib.method.fastpath._take_rows"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES


def long_functions(name: str) -> list[str]:
    """Every function or method of module ``name`` over :data:`MAX_FUNCTION_LINES` lines (its ``def`` to
    its last line; decorators excluded), as ``module.function (line N: L lines)``."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{name}.{node.name} (line {node.lineno}: {length} lines)")
    return found


def test_no_function_is_over_80_lines():
    """Long functions are split into named steps (issue 37)."""
    assert [found for name in sorted(MODULES) for found in long_functions(name)] == []


def test_the_long_function_finder_finds_one(tmp_path, monkeypatch):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    source = (f"@decorated\ndef fits():\n{body}\n"
              f"class Holder:\n    def long(self):\n{body.replace('    ', '        ')}        return 0\n")
    (tmp_path / "probe.py").write_text(source)
    monkeypatch.setitem(MODULES, "hearlib.method.probe", tmp_path / "probe.py")
    assert long_functions("hearlib.method.probe") == [
        f"hearlib.method.probe.long (line {MAX_FUNCTION_LINES + 4}: {MAX_FUNCTION_LINES + 1} lines)"]


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_every_package_says_what_it_holds(folder):
    assert ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))


def _python(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter whose environment has no OMP_WAIT_POLICY."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=PACKAGE.parent, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_importing_hearlib_sets_no_environment_variable():
    assert _python("import os, hearlib; print('OMP_WAIT_POLICY' in os.environ)") == "False"


def test_the_command_line_sets_the_openmp_wait_policy_before_torch():
    code = ("import contextlib, io, os, sys\nfrom hearlib.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    assert _python(code) == "PASSIVE False"
