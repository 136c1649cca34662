"""Question types (hearlib.records.questions): the colour question's record scores the colour word, every
question has its own keys and contexts, samples are those correct under every type, COCO offers
the object question only. On the committed organism and a few held-out scenes."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.paths import MODELS, SHARED_COCO_TINY

ORGANISM = MODELS / "hear-organism-s"
needs_organism = pytest.mark.skipif(not (ORGANISM / "model.safetensors").exists(),
                                    reason=f"committed organism not found at {ORGANISM} (run `make model`)")


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    from hearlib.organism import scenes

    out = tmp_path_factory.mktemp("question-scenes") / "s"
    scenes.generate(out, 8, seed=4242, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def engine():
    from hearlib.method.loading import load_engine

    return load_engine(ORGANISM, device="cpu")


def _pipeline(data, store, engine, **kw):
    from hearlib.records.pipeline import Pipeline

    return Pipeline(ORGANISM, data, store=store, n_mean_images=3, batch_size=64, progress=False, engine=engine, **kw)


def test_scenes_offer_four_types_with_answers_from_their_labels(scenes_dir):
    import json

    from hearlib.records.pipeline import dataset_kind, load_items
    from hearlib.records.questions import ORGANISM_QUESTIONS, answer_of, questions_for

    items = load_items(scenes_dir, dataset_kind(scenes_dir))
    assert list(questions_for(items)) == ["object", "color", "position", "kind"]
    labels = json.loads((scenes_dir / "labels.json").read_text())["images"]
    for it in items:
        truth = labels[f"domains/real/{it.label}/{it.path.name}"]     # the COCO images are the real style
        for name, key in (("object", "object"), ("color", "color"), ("position", "position"), ("kind", "supercategory")):
            assert answer_of(it, ORGANISM_QUESTIONS[name].answer) == truth[key]


def test_plan_asks_every_type_of_the_same_selection(scenes_dir):
    from hearlib.paper.plan import profile_params, study_plan
    from hearlib.records.questions import ORGANISM_QUESTIONS

    params = profile_params("ci", data=str(scenes_dir))
    requests = study_plan(params, ["questions"])
    assert [(r.stage, r.settings.prompt, r.settings.answer) for r in requests] == \
        [("attribution", q.prompt, q.answer) for q in ORGANISM_QUESTIONS.values()]
    assert len({r.selection for r in requests}) == 1
    selection = requests[0].selection
    assert selection.n == params["n_question_samples"] == 3
    assert selection.questions == tuple((q.prompt, q.answer) for q in ORGANISM_QUESTIONS.values())
    assert study_plan({**params, "n_question_samples": 0}, ["questions"]) == []


@pytest.mark.skipif(not (SHARED_COCO_TINY / "annotations" / "instances_val2017.json").exists(),
                    reason=f"real COCO annotations not found at {SHARED_COCO_TINY}")
def test_coco_offers_only_the_object_question_unless_the_user_adds_one():
    from hearlib.records.datasets import load_coco
    from hearlib.errors import UserError
    from hearlib.paper.plan import profile_params, study_plan
    from hearlib.prompts import PAPER_PROMPT
    from hearlib.records.questions import questions_for

    items = load_coco(SHARED_COCO_TINY, split="val2017")
    assert list(questions_for(items)) == ["object"]
    custom = {"kind": {"prompt": "What kind of thing is it?", "answer": "supercategory"}}
    offered = questions_for(items, custom)
    assert list(offered) == ["object", "kind"] and offered["kind"].answer == "supercategory"
    with pytest.raises(UserError, match="color"):
        questions_for(items, {"color": {"prompt": "What color?", "answer": "color"}})
    with pytest.raises(UserError, match="prompt"):
        questions_for(items, {"color": {"answer": "color"}})
    params = profile_params("ci", data=str(SHARED_COCO_TINY))
    requests = study_plan(params, ["questions"])
    assert [(r.settings.prompt, r.settings.answer, r.stage) for r in requests] == [(PAPER_PROMPT, "label", "attribution")]


@needs_organism
def test_colour_record_scores_the_colour_word_and_keys_differ(scenes_dir, engine, tmp_path):
    from hearlib.method.means import MeanKV
    from hearlib.records.selection import Selection
    from hearlib.prompts import COLOR_PROMPT
    from hearlib.records.questions import ORGANISM_QUESTIONS
    from hearlib.records.stages import Settings

    pipe = _pipeline(scenes_dir, tmp_path / "s", engine)
    colour = Settings.make(prompt=COLOR_PROMPT, answer="color", n_masks=40)
    obj = Settings.make(n_masks=40)
    (item,) = pipe.select(Selection(1, questions=((COLOR_PROMPT, "color"),)))
    record = pipe.ensure("attribution", item, colour)
    word = item.extra["color"]
    assert record.meta["answer"] == word and record.meta["answer_tokens"] == [word]
    assert record.meta["answer_id"] == engine.tokenizer.convert_tokens_to_ids(word)
    # the engine directly: the colour word's logit under the colour prompt
    sample = engine.prepare(item.path, answer=word, prompt=COLOR_PROMPT)
    assert record.meta["logit_unablated"] == pytest.approx(float(engine.record(sample).logit), abs=1e-5)
    (means_file,) = [p for p in (tmp_path / "s" / "_means").rglob("*.safetensors")]
    means = MeanKV.load(means_file, engine=engine, prompt=COLOR_PROMPT)
    np.testing.assert_allclose(engine.logits(sample, means, record["masks"][:6], batch_size=64),
                               record["logits"][:6], atol=1e-4)
    # the object question of the same sample scores the category, under its own keys and context
    other = pipe.ensure("attribution", item, obj)
    assert other.meta["answer"] == item.label != word and other.meta["answer_tokens"] == [item.label]
    assert other.key != record.key
    keys = {pipe.key(stage, Settings.make(prompt=q.prompt, answer=q.answer), item)
            for q in ORGANISM_QUESTIONS.values() for stage in ("screen",)}
    assert len(keys) == 4
    # the same prompt with another answer field is another record too
    assert pipe.key("screen", Settings.make(prompt=COLOR_PROMPT, answer="position"), item) not in keys
    # the paper's question keeps the keys it had before the answer field existed
    assert "answer" not in pipe.key_settings("attribution", obj) and pipe.key_settings("attribution", colour)["answer"] == "color"
    a, b = pipe.context(item, COLOR_PROMPT, "color"), pipe.context(item, COLOR_PROMPT, "label")
    assert a is not b and (a.answer, b.answer) == (word, item.label)
    assert not np.allclose(record["theta"], other["theta"])


@needs_organism
def test_question_selection_is_correct_under_every_type(scenes_dir, engine, tmp_path):
    from hearlib.records.selection import Selection
    from hearlib.records.questions import ORGANISM_QUESTIONS, answer_of

    pipe = _pipeline(scenes_dir, tmp_path / "s", engine)
    pairs = tuple((q.prompt, q.answer) for q in ORGANISM_QUESTIONS.values())
    chosen = pipe.select(Selection(None, questions=pairs))
    expected = []
    for it in pipe.items():      # independently: the organism's greedy next token is every answer word
        ok = True
        for q in ORGANISM_QUESTIONS.values():
            sample = engine.prepare(it.path, answer=answer_of(it, q.answer), prompt=q.prompt)
            ok &= int(engine.record(sample).predicted_id) == int(sample.answer_id)
        if ok:
            expected.append(it.image_id)
    assert [it.image_id for it in chosen] == expected and expected
    assert len(expected) < len(pipe.items()) or len(pipe.excluded) == 0
