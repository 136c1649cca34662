"""make figures = collect, then render: the render step reads the store and loads no model, and
draws what a lazy run (notebooks computing their own records) draws."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_notebooks_are_listed_once_in_order():
    from hearlib.paper.catalogue import NOTEBOOKS
    from hearlib.paper.catalogue import GROUPS

    assert list(NOTEBOOKS) == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert {g for groups in NOTEBOOKS.values() for g in groups} == set(GROUPS)


def test_a_notebook_gets_the_profile_and_the_overrides_given():
    from hearlib.paper.render import notebook_parameters

    params = notebook_parameters("notebooks/profiles/ci.yaml", {"data": "d", "out": None, "n_samples": 3})
    assert params == {"profile": "notebooks/profiles/ci.yaml", "overrides": {"data": "d", "n_samples": 3}}


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env.pop("HEARLIB_READ_ONLY", None)
    return env


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _render(store: Path, figures: Path, build: Path, scenes: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hearlib.paper.render", "render", "--profile", "ci", "--build", str(build),
                           "-p", "data", str(scenes), "-p", "store", str(store), "-p", "out", str(figures), *extra],
                          env=_env(), capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_render_on_a_complete_store_loads_no_model_and_matches_a_lazy_run(tmp_path):
    from hearlib.organism import scenes

    data = tmp_path / "scenes"
    scenes.generate(data, 60, seed=1, progress=False)
    store = tmp_path / "store"
    collect = subprocess.run([sys.executable, "-m", "hearlib", "run", "--profile", "ci", "--data", str(data),
                              "--out", str(store), "--no-progress"], env=_env(), capture_output=True, text=True,
                             timeout=900, cwd=ROOT)
    assert collect.returncode == 0, collect.stderr[-3000:]
    before = _files(store)

    rendered = _render(store, tmp_path / "figures", tmp_path / "build", data, "--jobs", "2")   # as make render
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert "WARNING" not in rendered.stderr and "unknown parameter" not in rendered.stderr
    # read-only: no record, claim or means written, so no model could have run
    assert _files(store) == before

    # a store without the records stops the render with the command that fills it
    empty = _render(tmp_path / "empty", tmp_path / "figures-x", tmp_path / "build-x", data, "--only", "01_head_ablation")
    assert empty.returncode != 0 and "python -m hearlib run --profile ci" in empty.stderr + empty.stdout

    # the same figures as notebooks that compute their records themselves, one after another
    lazy = _render(tmp_path / "lazy-store", tmp_path / "lazy", tmp_path / "lazy-build", data, "--lazy")
    assert lazy.returncode == 0, lazy.stderr[-3000:]
    tables = sorted(p.name for p in (tmp_path / "figures").glob("*.csv"))
    assert len(tables) > 10 and tables == sorted(p.name for p in (tmp_path / "lazy").glob("*.csv"))
    for name in tables:
        assert (tmp_path / "figures" / name).read_text() == (tmp_path / "lazy" / name).read_text(), name
    pictures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert pictures == sorted(p.name for p in (tmp_path / "lazy").glob("*.png"))
    for name in pictures:
        assert (tmp_path / "figures" / name).read_bytes() == (tmp_path / "lazy" / name).read_bytes(), name


def test_plan_collects_the_six_numbers_of_each_organism_present(tmp_path):
    """10_organisms reads, per organism: attribution and validation on n_size_samples, attribution on
    the t-SNE selection, and θ under the paper prompt and the nine others; a missing folder is skipped."""
    from hearlib.paper.plan import profile_params, study_plan
    from hearlib.prompts import ALTERNATIVE_PROMPTS, PAPER_PROMPT

    present = tmp_path / "present"
    present.mkdir()
    params = profile_params("ci", data=str(tmp_path), organisms=[str(present), "data/models/not-trained-yet"])
    requests = study_plan(params, ["organisms"])
    assert {r.model for r in requests} == {str(present)}
    assert [(r.stage, r.selection.n, r.selection.per_class) for r in requests[:3]] == [
        ("attribution", params["n_size_samples"], None), ("validation", params["n_size_samples"], None),
        ("attribution", params["n_size_tsne_samples"], params["per_class"])]
    prompts = requests[3:]
    assert [r.settings.prompt for r in prompts] == [PAPER_PROMPT, *ALTERNATIVE_PROMPTS]
    assert {r.selection.n for r in prompts} == {params["n_organism_prompt_samples"]}
    # none listed: the main model's six numbers
    main = study_plan({**params, "organisms": []}, ["organisms"])
    assert {r.model for r in main} == {str(params["model"])} and len(main) == 13


def test_your_own_models_are_the_organisms_compared(tmp_path):
    from hearlib.paper.plan import profile_params

    assert profile_params("quick", data=str(tmp_path))["organisms"][-1].endswith("hear-organism-r8-tuned")
    mine = profile_params("quick", data=str(tmp_path), model="a", models=["a", "b"])
    assert mine["organisms"] == ["a", "b"]
    assert profile_params("quick", data=str(tmp_path), models=["a"], organisms=["c"])["organisms"] == ["c"]


def test_an_organism_path_counts_from_the_repository_root(tmp_path, monkeypatch):
    """The notebooks run from build/notebooks/...: data/models/... is found from the root, as Study finds it."""
    from hearlib.paper.plan import present_on_disk

    monkeypatch.chdir(tmp_path)
    assert present_on_disk("data/models/hear-organism-s") == (ROOT / "data/models/hear-organism-s").is_dir()
    assert not present_on_disk("data/models/never-trained")
    assert present_on_disk("llava-hf/llava-1.5-7b-hf")            # a hub id: the loader decides


def test_the_catalogue_of_items_is_what_the_published_readme_shows():
    """hearlib.paper.catalogue.ITEMS (what the browser test expects) against figures/README.md's rows."""
    import re

    from hearlib.paper.catalogue import ITEMS, REPORTING

    assert set(ITEMS) == set(REPORTING)
    shown: dict[str, list[str]] = {}
    for line in (ROOT / "figures" / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 5 and re.fullmatch(r"\d\d_\w+", cells[-1]):
            shown.setdefault(cells[-1], []).append(cells[0])
    assert {name: sorted(items) for name, items in shown.items()} == \
        {name: sorted(items) for name, items in ITEMS.items()}


def test_plan_uses_the_head_sets_on_the_samples_after_those_they_are_found_on(tmp_path):
    """12_using_heads reads stage generation on the n_using_samples after the first n_samples, whose
    θ (the main attribution records) the head sets come from."""
    from hearlib.paper.plan import profile_params, study_plan

    params = profile_params("ci", data=str(tmp_path))
    (request,) = study_plan(params, ["using"])
    assert request.stage == "generation" and request.model == str(params["model"])
    assert (request.selection.n, request.selection.skip) == (params["n_using_samples"], params["n_samples"])
    s = request.settings
    assert (s.head_set_samples, s.head_set_sizes, s.random_sets, s.scales, s.max_new_tokens) == (
        params["n_samples"], tuple(params["head_set_sizes"]), params["random_sets"], tuple(params["scales"]),
        params["max_new_tokens"])
    assert study_plan({**params, "n_using_samples": 0}, ["using"]) == []
