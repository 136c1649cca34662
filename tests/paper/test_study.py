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
