"""Stage ``generation`` (notebook 12) on a tiny random-weight LLaVA: head sets found on some samples'
θ, used on others while the model generates; checked against a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest_plugins = ["fixtures_collect"]

SETTINGS = dict(n_masks=64, head_set_samples=2, head_set_sizes=(1, 2), random_sets=2, scales=(0.0, 3.0),
                max_new_tokens=2)


@pytest.fixture(scope="module")
def coco(tiny_engine, tmp_path_factory):
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("interventions-coco")
    make_coco(root, tiny_engine, n_correct=4, n_wrong=1, seed=3)
    return root


def _pipeline(model, data, store):
    from hearlib.records.pipeline import Pipeline

    return Pipeline(model, data, store=store, n_mean_images=3, batch_size=32, progress=False)


def test_skip_selects_the_samples_after_a_first_selection(tiny_llava, coco, tmp_path, one_thread):
    from hearlib.records.selection import Selection

    pipe = _pipeline(tiny_llava, coco, tmp_path / "s")
    first_four = [it.image_id for it in pipe.select(Selection(4))]
    assert [it.image_id for it in pipe.select(Selection(2, skip=2))] == first_four[2:]
    assert [it.image_id for it in pipe.select(Selection(1, skip=1))] == first_four[1:2]


def test_head_sets_are_the_top_heads_of_mean_theta_and_attention_of_the_first_samples(tiny_llava, coco, tmp_path,
                                                                                      one_thread):
    from hearlib.records.generation_stage import head_sets
    from hearlib.records.selection import Selection
    from hearlib.records.stages import Settings

    pipe = _pipeline(tiny_llava, coco, tmp_path / "s")
    settings = Settings.make(**SETTINGS)
    derived = head_sets(pipe, settings)
    found = pipe.select(Selection(2))
    assert derived["found_on"] == [str(it.image_id) for it in found]
    records = [pipe.get("attribution", it, settings) for it in found]
    theta = (records[0]["theta"] + records[1]["theta"]) / 2
    attention = (records[0]["image_attention"].ravel() + records[1]["image_attention"].ravel()) / 2
    by_name = {(s["criterion"], s["k"], s["mode"], s["scale"]): s["heads"] for s in derived["sets"]}
    for k in (1, 2):
        assert set(by_name[("HeAr", k, "ablate", 1.0)]) == set(np.argsort(-theta, kind="stable")[:k].tolist())
        assert set(by_name[("Attention", k, "ablate", 1.0)]) == set(np.argsort(-attention, kind="stable")[:k].tolist())
        randoms = [s["heads"] for s in derived["sets"] if s["criterion"] == "Random" and s["k"] == k]
        assert len(randoms) == 2 and all(len(set(h)) == k for h in randoms)
    assert by_name[("HeAr", 2, "scale", 0.0)] == by_name[("HeAr", 2, "ablate", 1.0)]
    assert [s["scale"] for s in derived["sets"] if s["mode"] == "scale"] == [0.0, 3.0]
    assert head_sets(pipe, settings) is derived                     # derived once per pipeline


def test_generation_record_is_plain_generate_under_each_intervention(tiny_llava, tiny_engine, coco, tmp_path,
                                                                     one_thread):
    from hearlib.records.selection import Selection
    from hearlib.records.stages import Settings, StageFailed

    pipe = _pipeline(tiny_llava, coco, tmp_path / "s")
    settings = Settings.make(**SETTINGS)
    (item,) = pipe.select(Selection(1, skip=2))
    record = pipe.ensure("generation", item, settings)
    sets = record.meta["sets"]
    assert record["tokens"].shape == (1 + len(sets), 2) and record["correct"].shape == (1 + len(sets),)
    engine, means = pipe.engine, pipe.means(settings.prompt)
    sample = engine.prepare(record.meta["path"], answer=record.meta["label"])
    with torch.no_grad():
        plain = engine.model.generate(**sample.inputs, max_new_tokens=2, do_sample=False)[0, sample.seq_len:]
        assert record["tokens"][0].tolist()[:len(plain)] == plain.tolist()
        assert bool(record["correct"][0]) == (int(plain[0]) == sample.answer_id)
        for row, chosen in enumerate(sets, start=1):
            with engine.intervene(chosen["heads"], mode=chosen["mode"], scale=chosen["scale"], means=means):
                out = engine.model.generate(**sample.inputs, max_new_tokens=2, do_sample=False)[0, sample.seq_len:]
            assert record["tokens"][row].tolist()[:len(out)] == out.tolist()
            assert record.meta["texts"][row] == engine.tokenizer.decode(out, skip_special_tokens=True).strip()
    (found,) = pipe.select(Selection(1))
    with pytest.raises(StageFailed, match="found on this sample"):
        pipe.ensure("generation", found, settings)


def test_a_record_key_changes_with_the_attribution_it_was_derived_from(tiny_llava, coco, tmp_path):
    from hearlib.records.stages import Settings

    pipe = _pipeline(tiny_llava, coco, tmp_path / "s")
    a = pipe.key_settings("generation", Settings.make(**SETTINGS))
    b = pipe.key_settings("generation", Settings.make(**{**SETTINGS, "n_masks": 128}))
    assert a != b and a["versions"]["attribution"] == 1 and "n_masks" in a


def test_scaled_sets_only_where_scaling_a_head_s_image_attention_changes_anything():
    """Mllama's cross-attention layers attend to image keys only, so renormalising after a scale undoes
    it (the hook refuses mode 'scale'); its head sets have no scaled ones. Decoders that mix image and
    text keys (LLaVA, the hybrid Qwen3.5) keep them."""
    from hearlib.families.registry import family_of
    from hearlib.records.generation_stage import scaling_applies

    assert not scaling_applies(family_of("mllama"))
    assert scaling_applies(family_of("llava")) and scaling_applies(family_of("qwen3_5"))
