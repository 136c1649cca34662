"""hearlib.organism.diagnostics: the colour-miss classes on hand-built scenes, and the text-only
attention knockout against a layer-by-layer forward written out here."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hearlib.organism import diagnostics as D
from hearlib.organism import scenes


def test_hue_neighbours_follow_the_colour_circle():
    neighbours = D.hue_neighbours()
    assert set(neighbours["red"]) == {"purple", "orange"}
    assert set(neighbours["yellow"]) == {"orange", "green"}
    assert set(neighbours["blue"]) == {"green", "purple"}


def test_a_miss_is_a_distractors_colour_before_a_neighbouring_hue():
    scene = scenes.make_scene(1, 0)
    scene.main.color_name = "green"
    scene.distractors = scene.distractors[:1]
    scene.distractors[0].color = scenes.COLORS["yellow"]          # yellow: a neighbour of green too
    assert D.classify_miss("yellow", scene) == "distractor"
    assert D.classify_miss("blue", scene) == "neighbour"
    assert D.classify_miss("red", scene) == "other colour"
    assert D.classify_miss("cat", scene) == "not a colour"


def test_text_documents_are_held_out_questions_ending_at_the_answer():
    docs = D.text_documents(n=30)
    assert docs and all(d["prompt"].endswith("ASSISTANT:") and d["description"] in d["prompt"] for d in docs)
    assert all(d["prompt"].startswith("USER: " + d["description"] + "\n" + d["question"]) for d in docs)
    assert {d["steps"] for d in docs} == {1}


def test_two_step_documents_bind_a_described_object_and_ask_its_attribute():
    from hearlib.organism.recipe import color_name
    from hearlib.organism.scenes import make_scene

    one, two = D.text_documents(n=200), D.text_documents(n=200, kind="two-step")
    assert len(one) == len(two)                      # the same documents ask questions, half of them in two steps
    two_step = [d for d in two if d["steps"] == 2]
    assert 0.35 < len(two_step) / len(two) < 0.65
    by_prompt = {d["prompt"] for d in one}
    assert all(d["prompt"] in by_prompt for d in two if d["steps"] == 1)
    asked = {"colour": 0, "name": 0}
    for d in two_step:
        bound, asked_text = d["question"].split(" . ", 1)
        word = bound.rsplit(" ", 1)[-1]
        scene = make_scene(1, d["scene"])
        described = [(scene.main.category, scene.color)] + [(x.category, color_name(x.color)) for x in scene.distractors]
        names, colours = [n for n, _ in described], [c for _, c in described]
        if asked_text.startswith("What colour"):
            asked["colour"] += 1
            assert names.count(word) == 1 and colours[names.index(word)] == d["answer"]
        else:
            asked["name"] += 1
            colour = bound.split(" the ")[-1].split(" one")[0]
            assert colours.count(colour) == 1 and names[colours.index(colour)] == d["answer"]
    assert asked["colour"] > 0 and asked["name"] > 0


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    return model.model, model.lm_head


def _by_hand(lm, head, ids, context, blocked_layers, answer_id) -> float:
    """The decoder run layer by layer, each given its own causal mask, blocked where asked."""
    seq_len = ids.shape[-1]
    lowest = torch.finfo(torch.float32).min
    causal = torch.full((seq_len, seq_len), lowest).triu(1)
    blocked = causal.clone()
    blocked[context.stop:, context] = lowest
    positions = torch.arange(seq_len)[None]
    hidden = lm.embed_tokens(ids[None])
    rotary = lm.rotary_emb(hidden, positions)
    for index, layer in enumerate(lm.layers):
        mask = (blocked if index in blocked_layers else causal)[None, None]
        hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
    return float(head(lm.norm(hidden))[0, -1, answer_id])


@pytest.mark.parametrize("width", [1, 2])
def test_context_knockout_equals_the_forward_written_out(tiny_lm, width):
    lm, head = tiny_lm
    ids = torch.tensor([1, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    context, answer = slice(1, 6), 17
    pis = D.context_knockout(lm, head, ids, context, answer, width)
    with torch.no_grad():
        clean = _by_hand(lm, head, ids, context, set(), answer)
        none_read = _by_hand(lm, head, ids, context, set(range(4)), answer)
        expected = [(_by_hand(lm, head, ids, context, set(range(s, s + width)), answer) - none_read) / (clean - none_read)
                    for s in range(4 - width + 1)]
    np.testing.assert_allclose(pis, expected, rtol=1e-4, atol=1e-4)      # a ratio of logit differences
    assert not lm.layers[0].self_attn._forward_pre_hooks                 # hooks removed
    # blocking every layer is π = 0 by definition
    np.testing.assert_allclose(D.context_knockout(lm, head, ids, context, answer, 4), [0.0], atol=1e-6)


def test_prompt_knockout_is_the_literal_window_ablation_per_prompt(tmp_path):
    """On hear-organism-s: the positions after the image are the prompt's own tokens counted by the
    tokenizer, and each prompt's drop is 1 − π with one layer's heads ablated by the literal path."""
    from hearlib.method.loading import load_engine
    from hearlib.method.means import compute_means
    from hearlib.organism.model import prompt_text
    from hearlib.paths import MODELS
    from hearlib.prompts import PAPER_PROMPT
    from hearlib.records.pipeline import mean_reference_images

    model = MODELS / "hear-organism-s"
    scenes.generate(tmp_path / "scenes", 4, seed=4242, progress=False)
    prompts = (PAPER_PROMPT, D.UNSEEN_PROMPTS[1])
    result = D.prompt_knockout(model, tmp_path / "scenes", prompts, n_scenes=1, n_reference=3, progress=False)

    engine = load_engine(model)
    tail = {p: prompt_text(p).split("<image>", 1)[1] for p in prompts}
    means = compute_means(engine, mean_reference_images(tmp_path / "scenes", 3), progress=False)
    labels = json.loads((tmp_path / "scenes" / "labels.json").read_text())["images"]
    items = [(path, label) for path, label in labels.items() if label["scene_id"] < 1]
    assert [row["prompt"] for row in result["prompts"]] == list(prompts)
    for row in result["prompts"]:
        assert row["text_after_image"] == len(engine.tokenizer(tail[row["prompt"]], add_special_tokens=False)["input_ids"])
        pis = []
        for path, label in items:
            sample = engine.prepare(tmp_path / "scenes" / path, answer=label["object"], prompt=row["prompt"])
            if not engine.record(sample).correct:
                continue
            masks = np.ones((engine.n_layers, engine.n_layers * engine.n_heads), dtype=bool)
            for layer in range(engine.n_layers):
                masks[layer, layer * engine.n_heads:(layer + 1) * engine.n_heads] = False
            pis.append(engine.normalized(sample, means, masks, method="literal"))
        assert row["n_correct"] == len(pis) > 0
        np.testing.assert_allclose(row["drop"], 1 - np.median(pis, axis=0), atol=1e-4)
    assert result["prompts"][1]["text_after_image"] == result["prompts"][0]["text_after_image"] + 7


def test_peak_stability_is_the_share_of_resamples_that_keep_the_peak():
    firm = np.tile([0.1, 0.9, 0.8], (20, 1))                    # π lowest at layer 0 in every sample: drop peaks there
    assert D.peak_stability(firm, 0) == 1.0 and D.peak_stability(firm, 1) == 0.0
    split = np.array([[0.0, 1.0]] * 10 + [[1.0, 0.0]] * 11)     # 10 samples read in layer 0, 11 in layer 1
    share = D.peak_stability(split, 1)
    draws = np.random.default_rng(0).integers(21, size=(1000, 21))
    expected = np.mean([(draws[i] >= 10).sum() > 10.5 for i in range(1000)])    # layer 1 wins when its readers are most
    assert share == pytest.approx(expected, abs=0.02) and 0.2 < share < 0.8
