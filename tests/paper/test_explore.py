"""hearlib.paper.explore on a tiny random-weight LLaVA: the panels read the right records, the live
ablation is engine.normalized (checked against the literal method), the export round-trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

SETTINGS = dict(n_masks=40, ratio=0.75, seed=3)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store holding every record the explorer reads, for 3 samples (computed by a Study)."""
    import torch
    from hearlib.organism import scenes
    from hearlib.records.stages import Settings
    from hearlib.paper.study import Study
    from hearlib.families.tiny import build_tiny

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("explore")
    model = build_tiny("llava", root / "tiny")
    scenes.generate(root / "scenes", 4, seed=1, progress=False)
    st = Study(model, root / "scenes", store=root / "store", n_mean_images=3, progress=False, compute=True)
    items = st.samples(3, correct_only=False)
    for item in items:
        st.validation(item, **SETTINGS)
        st.pipeline.ensure("head_attention", item, Settings())
        st.pipeline.ensure("lens", item, Settings())
    return model, root, st, items


def _explorer(filled, compute=False):
    from hearlib.paper.explore.data import Explorer
    from hearlib.paper.study import Study

    model, root, _, _ = filled
    st = Study(model, root / "scenes", store=root / "store", n_mean_images=3, progress=False, compute=compute)
    return Explorer(st, n_samples=3, correct_only=False, **SETTINGS)


def test_panels_read_the_records_and_compute_nothing(filled):
    from hearlib.paper.analysis import head_name
    from hearlib.records.stages import Settings

    _, _, st, items = filled
    ex = _explorer(filled)
    assert [it.image_id for it in ex.items] == [it.image_id for it in items]
    item = items[1]
    attr, valid = st.attribution(item, **SETTINGS), st.validation(item, **SETTINGS)
    lens = st.pipeline.ensure("lens", item, Settings())
    L, H = attr["n_layers"], attr["n_heads"]
    np.testing.assert_array_equal(ex.theta_map(item.image_id), attr["theta"].reshape(L, H))
    order = [n for n, _, _ in ex.heads_by_theta(item)]
    assert sorted(order) == list(range(L * H))
    assert all(attr["theta"][a] >= attr["theta"][b] for a, b in zip(order, order[1:]))
    # Eq. 10 per image token, independently from the engine's unablated forward
    engine = st.engine
    record = engine.record(engine.prepare(item.path, answer=item.label))
    stars = np.stack([st.validation(it, **SETTINGS)["x_star"] for it in items])
    for n in (0, L * H - 1, order[0]):
        panel = ex.head(item, n)
        l, h = divmod(n, H)
        np.testing.assert_allclose(panel.attention, record.text_to_image[l, h].mean(axis=0), atol=1e-6)
        assert panel.attention.sum() == pytest.approx(attr["image_attention"][l, h], abs=1e-5)
        assert panel.name == head_name(n, H) and panel.theta == attr["theta"][n]
        assert panel.delta == valid["delta"][n] and panel.in_x_star == bool(valid["x_star"][n])
        assert panel.x_star_share == pytest.approx(stars[:, n].mean())
        assert [t for t, _ in panel.lens] == list(lens["lens_tokens"][n][:10])
        assert panel.layout.n_tokens == panel.attention.size and not panel.missing
    for k in (1, 3, L * H):
        heads = ex.top_k(item, k)
        assert heads.sum() == k and set(np.flatnonzero(heads)) == set(order[:k])
        assert ex.stored_pi(item, k) == valid["faithfulness"][0, k - 1]
        assert ex.linear_prediction(item, heads) == pytest.approx(
            float(attr["theta"][heads].sum()) + attr.meta["intercept"])
    assert ex.sample_info(item)["k_star"] == valid.meta["k_star"]
    assert not ex.study.pipeline.engine_loaded and not ex.study.pipeline.computed


def test_a_missing_record_is_reported_not_computed(filled):
    from hearlib.paper.explore.data import Explorer
    from hearlib.paper.study import Study

    model, root, _, items = filled
    st = Study(model, root / "scenes", store=root / "store", n_mean_images=3, progress=False, compute=False)
    ex = Explorer(st, n_samples=3, correct_only=False, n_masks=40, ratio=0.75, seed=99)   # never collected
    assert ex.curves(items[0]) is None and ex.validation(items[0]) is None
    with pytest.raises(Exception, match="attribution"):
        ex.theta_map(items[0])
    assert not st.pipeline.computed and not st.pipeline.engine_loaded


def test_live_ablation_is_engine_normalized(filled):
    from hearlib.records.stages import Settings

    _, _, st, items = filled
    ex = _explorer(filled)
    with pytest.raises(Exception, match="load the model"):
        ex.live_pi(items[0], ex.top_k(items[0], 2))
    ex.load_model()
    item = items[0]
    engine = ex.study.pipeline.engine
    means = ex.study.pipeline.means(Settings().prompt)
    sample = engine.prepare(item.path, answer=item.label)           # prepared independently
    rng = np.random.default_rng(0)
    n = engine.n_total_heads
    sets = [ex.top_k(item, 1), ex.top_k(item, 5), rng.random(n) < 0.5, np.zeros(n, bool), np.ones(n, bool)]
    literal = engine.normalized(sample, means, np.stack(sets), method="literal")
    live = [ex.live_pi(item, heads) for heads in sets]
    np.testing.assert_allclose(live, literal, atol=1e-4)
    assert live[-1] == pytest.approx(1.0, abs=1e-4) and live[-2] == pytest.approx(0.0, abs=1e-4)   # fp32
    # and the stored faithfulness curve (validation stage) holds the same π for the top-k sets
    assert live[1] == pytest.approx(ex.stored_pi(item, 5), abs=1e-4)


def test_export_round_trips(filled, tmp_path):
    from hearlib.errors import UserError
    from hearlib.paper.explore.data import export_head_set, load_head_set

    _, _, _, items = filled
    ex = _explorer(filled)
    heads = ex.top_k(items[0], 4)
    data = ex.head_set(items[0], heads, k=4, pi_stored=ex.stored_pi(items[0], 4))
    path = export_head_set(tmp_path / "sets" / "a.json", data)
    back = load_head_set(path)
    assert back == json.loads(json.dumps(data))
    assert back["heads"] == sorted(np.flatnonzero(heads).tolist()) and len(back["names"]) == 4
    assert back["linear_prediction"] == pytest.approx(ex.linear_prediction(items[0], heads))
    (tmp_path / "bad.json").write_text('{"heads": 3}')
    with pytest.raises(UserError):
        load_head_set(tmp_path / "bad.json")


def test_the_widgets_update_and_export(filled, tmp_path):
    pytest.importorskip("ipywidgets")
    from hearlib.paper.explore.data import load_head_set
    from hearlib.paper.explore.ui import ExplorerUI

    _, _, _, items = filled
    ex = _explorer(filled)
    ui = ExplorerUI(lambda model, data: ex, [str(ex.study.model)], ["scenes"], export_folder=tmp_path)
    first = ui.overview.value
    assert first[:4] == b"\x89PNG" and ui.head == ex.heads_by_theta(items[0])[0][0]
    # the page shows the selection through the synced index (ipywidgets 8): it must follow the value
    assert ui.sample.index == 0 and ui.head_list.index == 0
    ui.sample.index = 2                             # what a choice in the page's dropdown sends
    assert ui.sample.value == str(items[2].image_id)
    assert ui.current.image_id == items[2].image_id and ui.overview.value != first
    before = ui.head_view.value
    ui.grid.children[3].click()                     # a click on the θ map picks head 3
    assert ui.head == 3 and ui.head_list.value == 3 and ui.head_view.value != before
    ui.k.value = 2
    path = ui.export()
    assert load_head_set(path)["heads"] == sorted(np.flatnonzero(ex.top_k(items[2], 2)).tolist())
    assert ui.run_button.disabled and not ex.study.pipeline.computed


def test_the_model_panel_shows_mean_theta_stability_and_a_second_model(filled, tmp_path):
    pytest.importorskip("ipywidgets")
    from hearlib.paper.explore.ui import ExplorerUI
    from hearlib.records.heads import head_data

    ex = _explorer(filled)
    document = ex.head_document()
    expected = head_data(ex.study.pipeline.store.root, ex.study.model_id).document
    assert [r["theta_mean"] for r in document["heads"]] == [r["theta_mean"] for r in expected["heads"]]
    ui = ExplorerUI(lambda model, data: ex, [str(ex.study.model), "same"], ["scenes"], export_folder=tmp_path)
    alone = ui.models_view.value
    assert alone[:4] == b"\x89PNG" and "x* Jaccard between halves" in ui.models_text.value
    ui.beside.value = "same"                       # a model beside itself: the diff figure, one geometry
    assert ui.models_view.value[:4] == b"\x89PNG" and ui.models_view.value != alone
    assert ui.models_text.value.count(ex.study.model_id) == 2 and not ex.study.pipeline.computed
