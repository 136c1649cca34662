"""hearlib.paper.study on a tiny random-weight LLaVA: records are computed once, stored, and consistent."""
from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]

from hearlib.method.attribution import fit_attribution
from hearlib.method.masks import n_ablated


@pytest.fixture(scope="module")
def study_setup(tmp_path_factory):
    from hearlib.organism import scenes
    from hearlib.families.tiny import build_tiny

    root = tmp_path_factory.mktemp("study")
    model = build_tiny("llava", root / "tiny")
    scenes.generate(root / "scenes", 8, seed=1, progress=False)
    return model, root


def _study(setup, monkeypatch, **kw):
    from hearlib.paper.study import Study

    model, root = setup
    return Study(model, root / "scenes", store=root / "store", n_mean_images=3, progress=False, **kw)


def test_stages_store_and_reuse(study_setup, monkeypatch):
    st = _study(study_setup, monkeypatch)
    items = st.samples(2, correct_only=False)
    assert [it.image_id for it in items] == [it.image_id for it in st.items()[:2]]
    item = items[0]
    attr = st.attribution(item, n_masks=40, seed=3)
    n = st.engine.n_total_heads
    assert attr["masks"].shape == (40, n)
    assert ((~attr["masks"]).sum(axis=1) == n_ablated(n, 0.75)).all()
    # θ and the held-out scores are the paper's fit on the stored masks and π
    fit = fit_attribution(attr["masks"], attr["pi"], seed=3)
    np.testing.assert_allclose(attr["theta"], fit.coef)
    assert attr.meta["r2"] == pytest.approx(fit.r2)
    # π is the engine's normalized logit for those masks
    pi = st.evaluator(item)(attr["masks"][:5])
    np.testing.assert_allclose(attr["pi"][:5], pi, atol=1e-4)   # batch size changes fp32 rounding

    valid = st.validation(item, n_masks=40, seed=3)
    assert valid["faithfulness"].shape == (4, n) and valid["faithfulness"][:, -1] == pytest.approx(1.0, abs=1e-6)
    assert valid["completeness"][:, -1] == pytest.approx(0.0, abs=1e-6)
    k = valid.meta["k_star"]
    assert valid["x_star"].sum() == k and valid["faithfulness"][0, k - 1] > 0.8
    text = st.text(item, n_masks=40, seed=3)
    assert text["delta_text"].shape == (st.screen(item)["n_text"],)
    image = st.image(item, n_masks=40, seed=3, n_image_masks=30)
    assert image["theta_img"].shape == image["w"].shape == (st.screen(item)["n_image"],)

    # a second study reads everything from the store: the engine is never loaded
    again = _study(study_setup, monkeypatch, compute=False)
    assert again.samples(2, correct_only=False)[0].image_id == item.image_id
    np.testing.assert_array_equal(again.attribution(item, n_masks=40, seed=3)["theta"], attr["theta"])
    np.testing.assert_array_equal(again.image(item, n_masks=40, seed=3, n_image_masks=30)["w"], image["w"])
    assert not again.pipeline.engine_loaded
    # other settings are another record
    other = st.attribution(item, n_masks=40, seed=4)
    assert not np.array_equal(other["masks"], attr["masks"])


def test_interleave_balances_domains_then_classes():
    from types import SimpleNamespace as S

    from hearlib.records.pipeline import _interleave

    items = [S(domain=d, label=l, i=i) for d in ("real", "sketch", "clipart") for l in ("cat", "apple") for i in range(2)]
    order = _interleave(items, ("domain", "label"))
    assert sorted(map(id, order)) == sorted(map(id, items))
    first = [(x.domain, x.label) for x in order[:6]]
    assert first == [("clipart", "apple"), ("real", "apple"), ("sketch", "apple"),
                     ("clipart", "cat"), ("real", "cat"), ("sketch", "cat")]
    assert all(x.i == 0 for x in order[:6]) and all(x.i == 1 for x in order[6:])


def test_reads_the_records_of_hearlib_run(study_setup, tmp_path):
    """What `python -m hearlib run` collected is what the study reads: no model is loaded."""
    from fixtures_collect import run

    from hearlib.paper.study import Study

    model, root = study_setup
    run(model, root / "scenes", tmp_path / "store", ("attribution", "validation"), n_samples=1, n_masks=40, seed=5,
        correct_only=False)
    st = Study(model, root / "scenes", store=tmp_path / "store", n_mean_images=3, progress=False, profile="paper")
    (item,) = st.samples(1, correct_only=False)
    entry = st.attribution(item, n_masks=40, seed=5)
    valid = st.validation(item, n_masks=40, seed=5)
    assert entry["n_masks"] == 40 and valid["x_star"].dtype == bool
    fit = fit_attribution(entry["masks"], entry["pi"], seed=5)
    np.testing.assert_allclose(entry["theta"], fit.coef)
    assert not st.pipeline.engine_loaded


def test_a_large_profile_stops_with_the_command_that_fills_the_store(study_setup, tmp_path, monkeypatch):
    from hearlib.records.pipeline import NotCollected
    from hearlib.paper.study import Study

    model, root = study_setup
    st = Study(model, root / "scenes", store=tmp_path / "empty", n_mean_images=3, progress=False, profile="paper")
    with pytest.raises(NotCollected, match=r"python -m hearlib run --profile paper --data .* --out .*empty"):
        st.samples(2)
    assert not st.pipeline.engine_loaded
    # small profiles compute what is missing, unless the render step forbids it
    assert Study(model, root / "scenes", store=tmp_path / "s", profile="ci").pipeline.compute
    monkeypatch.setenv("HEARLIB_READ_ONLY", "1")
    assert not Study(model, root / "scenes", store=tmp_path / "s", profile="ci").pipeline.compute


def test_the_generated_study_scenes_are_made_where_missing(tmp_path, monkeypatch):
    from hearlib import paths
    from hearlib.errors import UserError
    from hearlib.paper.study import study_data

    monkeypatch.setattr(paths, "SCENES", tmp_path / "scenes")
    made = study_data(tmp_path / "scenes" / "study-3")
    assert len(list((made / "coco" / "images").iterdir())) == 3 and (made / "domains").is_dir()
    with pytest.raises(UserError, match="run `make figures` first"):
        study_data(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def restricted_setup(tmp_path_factory):
    """Tiny Mllama (cross-attention) and Qwen3.5 (hybrid) models, each with one screen record stored,
    and the decoder layers HeAr should cover, read from each config (not from the engine)."""
    import json

    from hearlib.families.tiny import build_tiny
    from hearlib.organism import scenes
    from hearlib.paper.study import Study

    root = tmp_path_factory.mktemp("restricted")
    scenes.generate(root / "scenes", 2, seed=1, progress=False)
    covered, studies = {}, {}
    for family in ("mllama", "qwen3_5"):
        model = build_tiny(family, root / family)
        text = json.loads((model / "config.json").read_text())["text_config"]
        covered[family] = (text["cross_attention_layers"] if family == "mllama" else
                           [i for i, kind in enumerate(text["layer_types"]) if kind == "full_attention"])
        covered[family] = (covered[family], text["num_hidden_layers"])
        studies[family] = Study(model, root / "scenes", store=root / "store", n_mean_images=2, progress=False,
                                profile="ci")
        studies[family].screen(studies[family].samples(1, correct_only=False)[0])
    return root, studies, covered


def expected_restriction(family: str, layers: list[int], n_layers: int) -> str:
    shown = f"{len(layers)} of {n_layers} (layers {', '.join(map(str, layers))})"
    if family == "mllama":
        return (f"cross-attention layers only, {shown}: the self-attention layers never see the image and "
                "are left alone")
    return f"softmax-attention layers only, {shown}: the other layers' token mixing is not ablated"


def test_the_coverage_is_read_from_the_records_and_named_in_short(restricted_setup, study_setup):
    """Study.coverage is the engine's, as the stored records carry it (read without loading the model); its
    restriction names the layers the config says HeAr covers, and nothing for a model whose whole decoder it
    covers."""
    from hearlib.paper.study import Study

    root, studies, covered = restricted_setup
    for family, study in studies.items():
        reader = Study(study.model, root / "scenes", store=root / "store", n_mean_images=2, profile="ci")
        coverage = reader.coverage()
        assert coverage == study.engine.covered and not reader.pipeline.engine_loaded
        assert coverage.sentence() == study.engine.coverage
        assert (list(coverage.layers), coverage.decoder_layers) == covered[family]
        assert coverage.restriction() == expected_restriction(family, *covered[family])
        layers, n_decoder = covered[family]
        assert reader.layer_rows() == layers and reader.decoder_layer(1, len(layers)) == (layers[1], n_decoder)
        np.testing.assert_allclose(reader.row_depths(len(layers)), np.array(layers) / (n_decoder - 1))
    model, scenes_root = study_setup
    llava = Study(model, scenes_root / "scenes", store=root / "llava-store", n_mean_images=2, profile="ci")
    assert llava.coverage() is None                                       # nothing stored yet
    llava.screen(llava.samples(1, correct_only=False)[0])
    assert llava.coverage().kind == "decoder" and llava.coverage().restriction() is None
    assert llava.coverage().sentence().startswith("HeAr covers all ")
    assert llava.layer_rows() is None and llava.decoder_layer(1, 2) == (1, 2)
    np.testing.assert_allclose(llava.row_depths(3), [0, 0.5, 1])


def test_every_figure_s_settings_state_the_layers_covered(restricted_setup, tmp_path):
    """A notebook's report settings (RESULTS.md's settings line) name, per model studied, the layers
    HeAr covers where not the whole decoder, and say when every sample was studied (CORRECT_ONLY=0)."""
    import json

    from hearlib.paper.notebook import open_notebook

    root, studies, covered = restricted_setup
    nb = open_notebook("02_head_attribution", "ci", model=str(studies["mllama"].model), data=str(root / "scenes"),
                       store=str(root / "store"), out=str(tmp_path), correct_only=False)
    nb.study_of(str(studies["qwen3_5"].model))
    nb.finish()
    settings = json.loads((tmp_path / ".report" / "02_head_attribution.json").read_text())["settings"]
    assert settings["coverage"] == "; ".join(f"{family}: {expected_restriction(family, *covered[family])}"
                                             for family in ("mllama", "qwen3_5"))
    assert settings["correct_only"] is False
    assert f"coverage={settings['coverage']}" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.parametrize("kind, expected", [
    ("decoder", None),
    ("cross-attention", "cross-attention layers only, 2 of 5 (layers 1, 3): the self-attention layers never see the "
                        "image and are left alone"),
    ("hybrid", "softmax-attention layers only, 2 of 5 (layers 1, 3): the other layers' token mixing is not ablated"),
    ("encoder-decoder", "the decoder's cross-attention over the encoder only (all 2 decoder layers): the encoder and "
                        "the decoder's self-attention are not ablated"),
])
def test_the_engine_s_coverage_names_its_kind_and_layers(kind, expected):
    """EngineChecks.covered (the engine's own property on a stand-in with 2 covered layers, 1 and 3, of 5; an
    encoder-decoder's 2 decoder layers) is the kind and layers every record's environment carries, and what a
    figure's settings state."""
    from types import SimpleNamespace

    from hearlib.method.checks import Coverage, EngineChecks

    family = SimpleNamespace(hybrid=kind != "decoder", cross_attention=kind in ("cross-attention", "encoder-decoder"),
                             encoder_decoder=kind == "encoder-decoder")
    layers = [0, 1] if kind in ("decoder", "encoder-decoder") else [1, 3]
    n_decoder = 2 if kind in ("decoder", "encoder-decoder") else 5
    engine = SimpleNamespace(family=family, covered_layers=layers, n_decoder_layers=n_decoder)
    covered = EngineChecks.covered.fget(engine)
    assert covered == Coverage(kind, tuple(layers), n_decoder) == Coverage.from_dict(covered.as_dict())
    assert covered.restriction() == expected


def test_a_stage_a_model_cannot_have_is_refused_with_its_reason(restricted_setup, monkeypatch):
    """Mllama's readout is refused (its image tokens are cross-attention keys): the reason computing it
    gives, then the one the manifest keeps for a reader that loads no model; Qwen3.5's is made."""
    from hearlib.paper.study import Study
    from hearlib.records.stages import Settings

    root, studies, _ = restricted_setup
    mllama, qwen = studies["mllama"], studies["qwen3_5"]
    (item,) = mllama.samples(1, correct_only=False)
    why = mllama.refusal("readout", item)
    assert "the image tokens are cross-attention keys" in why
    monkeypatch.setenv("HEARLIB_READ_ONLY", "1")
    reader = Study(mllama.model, root / "scenes", store=root / "store", n_mean_images=2, profile="ci")
    assert reader.refusal("readout", item) == why and not reader.pipeline.engine_loaded
    monkeypatch.delenv("HEARLIB_READ_ONLY")
    (item,) = qwen.samples(1, correct_only=False)
    assert qwen.refusal("readout", item) is None
    assert qwen.pipeline.get("readout", item, Settings.make()) is not None
