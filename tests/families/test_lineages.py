"""hearlib.families as a package: one file per model lineage holds its records, each family is in
exactly one and each lineage has its test; the package registers them all on import without torch;
no module is over 600 lines."""
from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import hearlib.families
from hearlib.families.registry import FAMILIES

PACKAGE = Path(hearlib.families.__file__).parent
# the modules of hearlib.families that are not a lineage file
MACHINERY = {"registry", "geometry", "refusals", "coverage", "tiny", "real", "templates", "vocabulary"}
LINEAGES = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if m.name not in MACHINERY)


def _model_types_in(lineage: str) -> list[str]:
    """The model types of the ``Family(...)`` records a lineage file writes (its second argument)."""
    tree = ast.parse((PACKAGE / f"{lineage}.py").read_text())
    return [node.args[1].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Family"]


def test_every_family_is_in_exactly_one_lineage_file():
    written = [model_type for lineage in LINEAGES for model_type in _model_types_in(lineage)]
    assert sorted(written) == sorted(FAMILIES)
    assert all(_model_types_in(lineage) for lineage in LINEAGES), "a lineage file without a record"


def test_every_lineage_file_has_its_test_naming_each_of_its_families():
    for lineage in LINEAGES:
        test = importlib.import_module(f".test_{lineage}", __package__)
        assert sorted(test.EXPECTED) == sorted(_model_types_in(lineage)), lineage


def test_the_package_imports_every_lineage_file():
    source = (PACKAGE / "__init__.py").read_text()
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert imported == set(LINEAGES)


def test_no_module_is_over_600_lines():
    lengths = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 600} == {}


def test_the_registry_fills_without_torch_or_transformers():
    code = ("import sys, hearlib.families.registry as r; "
            "print(len(r.FAMILIES), sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == f"{len(FAMILIES)} []", result.stderr
