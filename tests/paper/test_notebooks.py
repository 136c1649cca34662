"""The notebooks read like the paper: each takes its values from one profile (its parameters cell holds
only ``profile`` and ``overrides``), defines no function, and shares no boilerplate with another."""
from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PROFILES = sorted(p.stem for p in (ROOT / "notebooks" / "profiles").glob("*.yaml"))


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
    body = text[text.index('# %% tags=["parameters"]\n'):].split("\n", 1)[1]
    end = body.find("\n# %%")
    return parameters(body if end < 0 else body[:end])


def ipynb_parameters(name: str) -> dict:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    source = cells[0]["source"]
    return parameters("".join(source) if isinstance(source, list) else source)


def code_lines(name: str) -> list[str]:
    """The notebook's code lines that are neither comments, imports nor the parameters cell, with string
    literals and numbers blanked: two runs of the same shape are the same boilerplate."""
    out = []
    for raw in (ROOT / "notebooks" / f"{name}.py").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "import ", "from ", "profile = ", "overrides = ")):
            continue
        line = re.sub(r"[rfbu]{0,2}(\"([^\"\\]|\\.)*\"|'([^'\\]|\\.)*')", '"…"', line)
        out.append(re.sub(r"\b\d+(\.\d+)?\b", "0", line))
    return out


def test_parameters_parser_reads_literals_only():
    assert parameters('a = 1\nb = [0.5, "x"]  # note\nc = None\n') == {"a": 1, "b": [0.5, "x"], "c": None}
    with pytest.raises(ValueError):
        parameters("a = some_call()\n")


def test_every_notebook_is_listed():
    from hearlib.paper.catalogue import NOTEBOOKS as LISTED

    assert NOTEBOOKS == sorted(LISTED)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_parameters_cell_holds_only_the_profile_and_overrides(name):
    code = [c for c in jupytext.read(ROOT / "notebooks" / f"{name}.py").cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert py_parameters(name) == {"profile": "quick", "overrides": {}}
    assert ipynb_parameters(name) == py_parameters(name), "run `make notebooks-sync`"
    if name != "00_explore":      # the explorer draws no paper item: no report
        assert "report.headline(" in "\n".join(c.source for c in code) and "nb.finish()" in code[-1].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_pair_is_in_sync_and_has_no_outputs(name):
    py = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    ipynb_path = ROOT / "notebooks" / f"{name}.ipynb"
    assert ipynb_path.is_file(), "run `make notebooks-sync`"
    ipynb = jupytext.read(ipynb_path)
    assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in ipynb.cells], \
        "the .ipynb is out of sync with the .py: run `make notebooks-sync`"
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "committed notebooks carry no outputs"


def test_profiles_parse_and_cover_the_parameters():
    import yaml

    for profile in ("quick", "paper", "ci"):
        params = yaml.safe_load((ROOT / "notebooks" / "profiles" / f"{profile}.yaml").read_text())
        assert params["profile"] == profile
        assert {"model", "models", "n_samples", "n_masks", "seed", "n_mean_images"} <= set(params)
    paper = yaml.safe_load((ROOT / "notebooks" / "profiles" / "paper.yaml").read_text())
    assert paper["n_samples"] == 200 and paper["n_masks"] == 10_000 and paper["n_mean_images"] == 100


def test_a_profile_can_change_a_few_values_of_another(tmp_path):
    from hearlib.errors import UserError
    from hearlib.paper.plan import load_profile

    quick, ingredients = load_profile("quick"), load_profile(ROOT / "notebooks/profiles/ingredients.yaml")
    assert ingredients["profile"] == "ingredients" and "base" not in ingredients
    assert {k: v for k, v in ingredients.items() if k not in ("profile", "organisms", "n_masks")} == \
        {k: v for k, v in quick.items() if k not in ("profile", "organisms", "n_masks")}
    assert ingredients["n_masks"] == 2000 and quick["n_masks"] == 1000    # the ingredient study's measured M
    assert [m.rsplit("/", 1)[-1] for m in ingredients["organisms"]] == [
        "hear-organism-r8", "hear-organism-r8-tuned", "hear-organism-r8-no-text", "hear-organism-r8-no-contrastive", "hear-organism-r8-no-align"]
    staged = load_profile("staged")      # the whole study on the staged organism, at quick's sizes
    assert staged["profile"] == "staged" and staged["model"].endswith("hear-organism-r8-tuned")
    assert staged["models"][0] == staged["model"] and staged["organisms"] == quick["organisms"]
    assert {k: v for k, v in staged.items() if k not in ("profile", "model", "models")} == \
        {k: v for k, v in quick.items() if k not in ("profile", "model", "models")}
    with pytest.raises(UserError, match="ci, ingredients, organisms-seeds, paper, quick, readsite, readsite-erased, readsite-erased-seed1, readsite-marked, staged or a YAML file"):
        load_profile("no-such-profile")     # the error lists what notebooks/profiles/ ships
    (tmp_path / "loop.yaml").write_text("base: " + str(tmp_path / "loop.yaml") + "\n")
    with pytest.raises(UserError, match="itself"):
        load_profile(tmp_path / "loop.yaml")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_notebook_defines_no_function_and_opens_through_open_notebook(name):
    tree = ast.parse((ROOT / "notebooks" / f"{name}.py").read_text())
    defined = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"{name} defines {defined}: functions live in hearlib"
    opened = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "open_notebook"]
    assert len(opened) == 1 and ast.literal_eval(opened[0].args[0]) == name


def test_no_two_notebooks_share_six_lines_of_the_same_shape():
    windows = {name: {tuple(lines[i:i + 6]) for i in range(len(lines) - 5)}
               for name, lines in ((n, code_lines(n)) for n in NOTEBOOKS)}
    shared = {(a, b): sorted(windows[a] & windows[b])[0] for a, b in itertools.combinations(NOTEBOOKS, 2)
              if windows[a] & windows[b]}
    assert not shared, f"boilerplate shared between notebooks (move it into hearlib): {shared}"


def test_the_shape_of_a_line_ignores_only_literals():
    assert code_lines("02_head_attribution")            # the notebook has code
    assert re.sub(r"\b\d+(\.\d+)?\b", "0", "x = f(3, 0.5)") == "x = f(0, 0)"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_key_is_a_known_parameter(profile):
    from hearlib.paper.notebook import NOTEBOOK_DEFAULTS
    from hearlib.paper.plan import DEFAULTS

    keys = set(yaml.safe_load((ROOT / "notebooks" / "profiles" / f"{profile}.yaml").read_text())) - {"base"}
    known = set(DEFAULTS) | set(NOTEBOOK_DEFAULTS) | {"profile"}
    assert keys <= known, f"{profile}.yaml sets parameters nothing reads: {sorted(keys - known)}"


def test_parameters_come_from_the_profile_then_the_overrides():
    from hearlib.paper.notebook import NOTEBOOK_DEFAULTS, notebook_params
    from hearlib.paper.plan import DEFAULTS, load_profile

    quick = load_profile("quick")
    params = notebook_params("quick")
    assert {k: params[k] for k in quick} == quick                            # the profile wins over the defaults
    assert params["data"] == NOTEBOOK_DEFAULTS["data"] and params["device"] is None
    assert params["threshold"] == DEFAULTS["threshold"]                      # not in quick: the study's default
    changed = notebook_params("quick", n_samples=3, out="build/x", model=None)
    assert changed["n_samples"] == 3 and changed["out"] == "build/x" and changed["model"] == quick["model"]
    ci_file = notebook_params("notebooks/profiles/ci.yaml")                  # as make figures names it
    assert ci_file == notebook_params("ci") and ci_file["profile"] == "ci"
    assert ci_file["n_show"] == load_profile("ci")["n_show"] != NOTEBOOK_DEFAULTS["n_show"]   # the profile wins


def test_a_wrong_profile_or_notebook_is_refused():
    from hearlib.errors import UserError
    from hearlib.paper.notebook import open_notebook

    with pytest.raises(UserError, match="profile not found"):
        open_notebook("02_head_attribution", "no-such-profile")
    with pytest.raises(UserError, match="unknown notebook"):
        open_notebook("02_head_atribution")


def test_every_reporting_notebook_lists_its_report_settings():
    from hearlib.paper.catalogue import REPORT_SETTINGS, REPORTING
    from hearlib.paper.notebook import notebook_params

    assert set(REPORT_SETTINGS) == set(REPORTING)
    known = notebook_params("quick")
    assert {k for keys in REPORT_SETTINGS.values() for k in keys} <= set(known)


PAPER_ITEM = re.compile(r"(?:Fig\.|Table) \d+[A-Z]?")


def sections(name: str) -> list[tuple[str, list[str]]]:
    """The notebook's ``## `` sections: the heading line and the sources of the code cells under it."""
    out = []
    for cell in jupytext.read(ROOT / "notebooks" / f"{name}.py").cells:
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        if cell.cell_type == "markdown" and first.startswith("## "):
            out.append((first[3:], []))
        elif cell.cell_type == "code" and out and cell.source.strip():
            out[-1][1].append(cell.source)
    return out


def headlines(source: str) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == "headline"]


def _outcomes(node: ast.expr) -> list[ast.expr]:
    """The values a (nested) conditional expression can take."""
    return _outcomes(node.body) + _outcomes(node.orelse) if isinstance(node, ast.IfExp) else [node]


def _verdict(call: ast.Call):
    return next((k.value for k in call.keywords if k.arg == "verdict"), None)


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != "00_explore"])
def test_each_paper_item_opens_with_its_claim_and_ends_with_its_verdict(name):
    from hearlib.paper.catalogue import ITEMS

    covered = set()
    for heading, code in sections(name):
        label, _, claim = heading.partition(" — ")
        named = PAPER_ITEM.findall(label)
        if not named:
            continue
        assert len(claim.split()) >= 5, f"{name}: '## {heading}' states no claim after ' — '"
        assert code, f"{name}: '## {heading}' has no code"
        closing = [ast.literal_eval(c.args[0]) for c in headlines(code[-1]) if _verdict(c) is not None]
        assert set(closing) & set(named), f"{name}: '## {heading}' does not end with a verdict on {named}"
        covered |= set(named)
    paper_items = {item for item in ITEMS[name] if PAPER_ITEM.fullmatch(item)}
    assert paper_items <= covered, f"{name}: no section states the claim of {sorted(paper_items - covered)}"


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != "00_explore"])
def test_every_verdict_on_a_paper_item_is_computed_from_the_numbers(name):
    from hearlib.paper.report import VERDICTS

    calls = headlines((ROOT / "notebooks" / f"{name}.py").read_text())
    assert calls
    for call in calls:
        verdict = _verdict(call)
        assert verdict is not None, f"{name}: a headline without a verdict: {ast.unparse(call)[:80]}"
        words = {ast.literal_eval(leaf) for leaf in _outcomes(verdict)}
        assert words <= set(VERDICTS), f"{name}: verdict words {words - set(VERDICTS)}"
        item = call.args[0]
        if isinstance(item, ast.Constant) and PAPER_ITEM.fullmatch(item.value):
            assert isinstance(verdict, ast.IfExp), f"{name}: the verdict on {item.value} is not computed"
