"""The notebooks' parameters cells default to the quick profile, so a notebook run by hand
(Jupyter, no papermill) computes what `make figures` computes, and the two cannot drift."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
QUICK = yaml.safe_load((ROOT / "notebooks" / "profiles" / "quick.yaml").read_text())
# not in the profile: where `make figures` (PROFILE=quick) puts its inputs and outputs
FIXED = {"data": "data/scenes/study-400", "store": "data/store/study", "out": "figures", "profile": "quick"}


def parameters(source: str) -> dict:
    """``name = literal`` assignments of a parameters cell, evaluated with ast.literal_eval."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
        elif not isinstance(node, ast.Expr):
            raise AssertionError(f"the parameters cell holds only literal assignments, got {ast.dump(node)[:80]}")
    return values


def py_parameters(name: str) -> dict:
    text = (ROOT / "notebooks" / f"{name}.py").read_text()
    start = text.index('# %% tags=["parameters"]\n')
    body = text[start:].split("\n", 1)[1]
    end = body.find("\n# %%")
    return parameters(body if end < 0 else body[:end])


def ipynb_parameters(name: str) -> dict:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    source = cells[0]["source"]
    return parameters("".join(source) if isinstance(source, list) else source)


def test_every_notebook_is_listed():
    from hearlib.paper.catalogue import NOTEBOOKS as LISTED

    assert NOTEBOOKS == sorted(LISTED)


def test_parameters_parser_reads_literals_only():
    assert parameters('a = 1\nb = [0.5, "x"]  # note\nc = None\n') == {"a": 1, "b": [0.5, "x"], "c": None}
    with pytest.raises(ValueError):
        parameters("a = some_call()\n")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_defaults_equal_the_quick_profile(name):
    params = py_parameters(name)
    shared = sorted(set(params) & set(QUICK))
    assert {"model", "n_masks", "seed", "n_mean_images"} <= set(shared)
    wrong = {k: (params[k], QUICK[k]) for k in shared if params[k] != QUICK[k] or type(params[k]) is not type(QUICK[k])}
    assert not wrong, f"{name}: defaults differ from notebooks/profiles/quick.yaml (notebook, profile): {wrong}"
    fixed = {k: (params[k], v) for k, v in FIXED.items() if k in params and params[k] != v}   # test_notebooks: which exist
    assert not fixed, f"{name}: (notebook, expected): {fixed}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_parameters_match_the_source(name):
    assert ipynb_parameters(name) == py_parameters(name), "run `make notebooks-sync`"


def test_every_profile_key_is_a_notebook_parameter():
    known = set().union(*(py_parameters(name) for name in NOTEBOOKS))
    for profile in ("quick", "staged", "paper", "ci"):
        keys = set(yaml.safe_load((ROOT / "notebooks" / "profiles" / f"{profile}.yaml").read_text())) - {"base"}
        assert keys <= known, f"{profile}.yaml sets parameters no notebook has: {sorted(keys - known)}"
