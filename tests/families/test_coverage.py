"""Coverage of transformers' image-text-to-text model types (hearlib.paper.coverage, docs/MODELS.md).

Every model type mapped to AutoModelForImageTextToText is either a registered family, checked end
to end on its tiny model (hearlib.paper.coverage.check_family), or refused with a one-line reason; the
table in docs/MODELS.md is exactly what these checks generate. Regenerate it with
``python -m hearlib.paper.coverage --write`` (or ``HEARLIB_WRITE_COVERAGE=1`` for this test)."""
from __future__ import annotations

import os

import pytest

from hearlib.families import refusals
from hearlib.paper import coverage
from hearlib.families.registry import FAMILIES


@pytest.fixture(scope="module")
def rows():
    return coverage.coverage()


def test_every_image_text_to_text_model_type_has_a_row(rows):
    assert [r.model_type for r in rows] == coverage.model_types()
    for r in rows:
        if r.model_type in FAMILIES:
            assert r.status == "works" and r.checked.startswith("; ".join(coverage.CHECKS))
            assert r.reason.startswith(FAMILIES[r.model_type].name + ": ")
        else:
            assert r.status != "works" and not r.checked and r.reason, r


def test_reasons_name_model_types_of_this_transformers_only():
    stale = set(refusals.REASONS) - set(coverage.model_types())
    assert not stale, f"reasons for model types transformers no longer maps: {sorted(stale)}"
    assert not set(refusals.REASONS) & set(FAMILIES), "a registered family also has a refusal reason"


def test_at_least_sixty_model_types_work_and_the_readme_states_the_count(rows):
    works = sum(r.status == "works" for r in rows)
    assert works >= 60
    readme = (coverage.DOC.parent.parent / "README.md").read_text()
    assert f"**{works} of the {len(rows)} model types**" in readme


def test_docs_models_md_holds_the_generated_table(rows):
    table = coverage.coverage_table(rows)
    if os.environ.get("HEARLIB_WRITE_COVERAGE"):
        coverage.write_table(rows)
    doc = coverage.DOC.read_text()
    assert coverage.replace_table(doc, table) == doc, (
        "docs/MODELS.md differs from the generated coverage table; run python -m hearlib.paper.coverage --write")


def test_real_geometry_column_names_the_hub_files_that_test_real_configs_runs(rows):
    """docs/MODELS.md says per row whether the geometry was checked against real hub files: the
    folders of hearlib.families.real.REAL_MODELS (each built and run by tests/families/test_real_configs.py), by
    the model_type of their config.json."""
    from hearlib.families.real import REAL_MODELS

    real = coverage.real_files()
    assert sum(len(folders) for folders in real.values()) == len(REAL_MODELS)
    assert {"llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "gemma3", "qwen3_5"} <= set(real)
    assert set(real) <= set(FAMILIES), "real hub files of a model type that is not a registered family"
    assert real["gemma3"] == ["`gemma-3-4b-it` (stand-in tokenizer)"]
    assert real["qwen2_5_omni_thinker"] == ["`qwen2.5-omni-7b-awq`"]      # an Omni checkpoint: its thinker's type
    assert real["blip-2"] == ["`blip2-opt-2.7b`"]                          # with its own (OPT) tokenizer
    for r in rows:
        assert r.real == ", ".join(real.get(r.model_type, []))
    table = coverage.coverage_table(rows)
    assert "| `qwen2_5_vl` | works | " in table and " | `qwen2.5-vl-3b-instruct` | Qwen2.5-VL: " in table
    assert " | no | " in table.split("| `llava_next` |")[1].splitlines()[0]


def test_check_family_fails_when_fast_differs_from_literal(monkeypatch):
    """The end-to-end check can fail: a fast path that is off by 1e-3 is caught."""
    from hearlib.method.engine import Engine

    real = Engine.logits

    def skewed(self, *args, method="fast", **kwargs):
        out = real(self, *args, method=method, **kwargs)
        return out + 1e-3 if method == "fast" else out

    monkeypatch.setattr(Engine, "logits", skewed)
    with pytest.raises(AssertionError, match="fast − literal"):
        coverage.check_family("llava")


def test_internvl_is_checked_with_internvl3_5s_decoder_too(monkeypatch):
    """InternVL3 has a Qwen2.5 decoder (model_type qwen2, the tiny InternVL's); InternVL3.5 a Qwen3
    decoder (query/key norms): the same end-to-end check on a tiny InternVL with a Qwen3 decoder."""
    import dataclasses

    from hearlib.families import registry as families
    from hearlib.families.tiny import internvl_qwen3_spec, tiny_internvl_qwen3

    config, _, _ = tiny_internvl_qwen3()
    assert config.text_config.model_type == "qwen3"
    monkeypatch.setitem(families.FAMILIES, "internvl", dataclasses.replace(families.FAMILIES["internvl"],
                                                                          tiny=internvl_qwen3_spec()))
    assert coverage.check_family("internvl").startswith("; ".join(coverage.CHECKS))


def test_check_release_reports_every_family_a_failure_and_a_type_the_release_lacks(monkeypatch, capsys):
    """`python -m hearlib.paper.coverage --check` (.ci/versions): every registered family checked under the
    installed release, a family whose model type this release does not define reported absent, not failed,
    and the exit status 1 as soon as one family fails."""
    def check(model_type):
        if model_type == "llava":
            raise AssertionError("fast − literal = 1.0e-03")
        return "checked"

    monkeypatch.setitem(FAMILIES, "no_such_model_type", FAMILIES["llava"])
    monkeypatch.setattr(coverage, "check_family", check)
    with pytest.raises(SystemExit) as stop:
        coverage.main(["--check"])
    assert stop.value.code == 1
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    assert lines["llava"] == "FAILED: AssertionError: fast − literal = 1.0e-03"
    assert lines["no_such_model_type"].startswith("absent from transformers")
    assert all(lines[t] == "checked" for t in FAMILIES if t not in ("llava", "no_such_model_type"))
