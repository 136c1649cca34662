"""The package's shape, read from its sources: no import circle, layers that import only downwards,
no module over 600 lines, and every package saying what it holds."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hearlib"
MAX_LINES = 600
# package -> the hearlib packages it must never import (the layers above it)
NEVER = {
    "families": {"method", "records", "paper", "cli"},
    "method": {"records", "paper", "cli", "organism"},
    "records": {"paper", "cli"},
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


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_every_package_says_what_it_holds(folder):
    assert ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
