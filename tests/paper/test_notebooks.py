"""The notebooks: py:percent sources with a `parameters` cell, paired .ipynb in sync, no outputs."""
from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = list(__import__("hearlib.paper.catalogue", fromlist=["NOTEBOOKS"]).NOTEBOOKS)   # listed once there
REQUIRED = {"model", "data", "n_masks", "seed", "out", "store", "n_mean_images", "profile"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_has_a_parameters_cell(name):
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    names = {line.split("=")[0].strip() for line in code[0].source.splitlines() if "=" in line and not line.startswith("#")}
    if name == "00_explore":     # the explorer draws no paper item: no report, no figures/ output
        assert REQUIRED - {"out"} <= names, f"missing parameters: {REQUIRED - {'out'} - names}"
        return
    assert REQUIRED <= names, f"missing parameters: {REQUIRED - names}"
    text = "\n".join(c.source for c in code)
    assert 'matplotlib.use("Agg")' in text and "report.headline(" in text


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
    with pytest.raises(UserError, match="ci, ingredients, paper, quick, readsite, readsite-marked, staged or a YAML file"):
        load_profile("no-such-profile")     # the error lists what notebooks/profiles/ ships
    (tmp_path / "loop.yaml").write_text("base: " + str(tmp_path / "loop.yaml") + "\n")
    with pytest.raises(UserError, match="itself"):
        load_profile(tmp_path / "loop.yaml")
