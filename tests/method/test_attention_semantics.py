"""The engine follows each model's own attention semantics: the mask transformers builds for each
layer (Gemma 3's bidirectional image block and sliding windows, PaliGemma's bidirectional
prefix), its scale and its soft-caps; and the fast path is chosen from the recorded masks.

The expected masks are built here from ``token_type_ids`` and the config alone."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hearlib.method.attention import RecordPlan, ablation
from hearlib.method.means import compute_means
from hearlib.method.loading import load_engine
from hearlib.families.registry import FAMILIES as RECORDS
from hearlib.families.tiny import FAMILIES


@pytest.fixture(scope="module")
def loaded(tiny_model_dir, random_images):
    images = random_images(4, seed=7)
    cache = {}

    def get(family):
        if family not in cache:
            engine = load_engine(tiny_model_dir(family))
            sample = engine.prepare(images[0], answer="dog")
            cache[family] = engine, sample, images
        return cache[family]

    return get


def layer_masks(engine, sample) -> dict[int, np.ndarray]:
    """The boolean mask (True = may attend) each decoder layer's attention receives, [S, S]."""
    seen = {}

    class Spy(RecordPlan):
        def attend(self, module, layer, query, key, value, attn):
            allowed = ~attn.blocked(query.shape[2], key.shape[2], query.device)
            seen[layer] = allowed.reshape(query.shape[2], key.shape[2]).cpu().numpy()
            return super().attend(module, layer, query, key, value, attn)

    with torch.no_grad(), ablation(Spy(sample.text_start, sample.image_positions)):
        engine.model(**sample.inputs, use_cache=False)
    return seen


def eager_logit(engine, sample, inputs=None) -> float:
    """The unpatched model (eager attention): adjusted answer logit at the last position."""
    model = engine.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            logits = model(**(inputs or sample.inputs)).logits[0, -1].double()
    finally:
        model.set_attn_implementation({"text_config": "hear"})
    return float(logits[sample.answer_id] - logits.mean())


def test_gemma3_layers_attend_under_a_bidirectional_image_block_and_a_sliding_window(loaded):
    engine, sample, _ = loaded("gemma3")
    text = engine.model.config.text_config
    assert text.layer_types == ["sliding_attention", "full_attention"]
    window = text.sliding_window
    assert sample.seq_len > window + sample.n_image, "the window must be shorter than the sequence"
    image = sample.inputs["token_type_ids"][0].cpu().numpy() == 1
    assert np.array_equal(np.flatnonzero(image), sample.image_positions.cpu().numpy())
    q, k = np.arange(sample.seq_len)[:, None], np.arange(sample.seq_len)[None, :]
    full = (k <= q) | (image[:, None] & image[None, :])
    sliding = full & (k > q - window)
    masks = layer_masks(engine, sample)
    assert np.array_equal(masks[1], full)
    assert np.array_equal(masks[0], sliding)
    img = sample.image_positions.cpu().numpy()
    assert masks[1][img[0], img[-1]], "the first image token reads the last one (bidirectional block)"
    assert not masks[0][-1, img].any(), "the last text token sees no image token in the sliding layer"
    assert masks[0][sample.text_start, img].any() and not masks[0][sample.text_start, img].all()
    # the fast path's premise holds: no prefix/image query reads a text key
    assert not (masks[0][:sample.text_start, sample.text_start:].any()
                or masks[1][:sample.text_start, sample.text_start:].any())
    assert engine.fast_path_problem(sample) is None and engine.path(sample) == "fast"


def test_gemma3_record_depends_on_the_image_block(loaded):
    """The bidirectional block matters in the tiny model: without token_type_ids (plain causal
    image tokens) the unpatched model gives another logit than the one the engine records."""
    engine, sample, _ = loaded("gemma3")
    recorded = engine.record(sample).logit
    assert abs(recorded - eager_logit(engine, sample)) <= 1e-5
    causal_inputs = {k: v for k, v in sample.inputs.items() if k != "token_type_ids"}
    assert abs(recorded - eager_logit(engine, sample, causal_inputs)) > 1e-4


def test_paligemma_prefix_lm_fails_the_fast_premise_and_runs_literal(loaded):
    engine, sample, images = loaded("paligemma")
    prefix = sample.inputs["token_type_ids"][0].cpu().numpy() == 0
    q, k = np.arange(sample.seq_len)[:, None], np.arange(sample.seq_len)[None, :]
    expected = (k <= q) | (prefix[:, None] & prefix[None, :])
    masks = layer_masks(engine, sample)
    for layer in masks:
        assert np.array_equal(masks[layer], expected)
    assert masks[0][sample.image_positions[0], sample.text_start:].all(), "the image reads the prompt"
    problem = engine.fast_path_problem(sample)
    assert problem is not None and "attend to text positions" in problem and "[0, 1]" in problem
    assert engine.path(sample) == "literal" and engine.path(sample, "literal") == "literal"
    means = compute_means(engine, images[1:], progress=False)
    heads = np.random.default_rng(0).random((3, engine.n_total_heads)) > 0.5
    with pytest.warns(RuntimeWarning, match="the literal path runs instead"):
        fast = engine.logits(sample, means, heads, method="fast")
    literal = engine.logits(sample, means, heads, method="literal")
    np.testing.assert_array_equal(fast, literal)


# families whose fast path is refused by design: a prefix or image block that reads text positions (PaliGemma's
# prefix-LM; Molmo 2's image block, which takes in the <im_col><im_end> after its last patch), and the hybrid and
# cross-attention decoders, whose uncovered layers carry the image into the text positions (docs/METHOD.md)
READS_TEXT_IN_THE_PREFIX = {"paligemma", "molmo2"}
LITERAL_BY_DESIGN = [f for f in FAMILIES if f in READS_TEXT_IN_THE_PREFIX or RECORDS[f].hybrid]


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in LITERAL_BY_DESIGN])
def test_causal_families_keep_the_fast_path(loaded, family):
    engine, sample, _ = loaded(family)
    assert engine.fast_path_problem(sample) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # the literal-path fallback warns with RuntimeWarning
        means = compute_means(engine, loaded(family)[2][1:2], progress=False)
        engine.logits(sample, means, np.zeros((1, engine.n_total_heads), bool), method="fast")


@pytest.mark.parametrize("family", LITERAL_BY_DESIGN)
def test_the_other_families_run_literal_and_say_why(loaded, family):
    engine, sample, _ = loaded(family)
    problem = engine.fast_path_problem(sample)
    assert problem and engine.path(sample) == "literal"
    if family in READS_TEXT_IN_THE_PREFIX:
        assert "attend to text positions" in problem
    elif RECORDS[family].encoder_decoder:           # Florence-2: no fast path written for a decoder without image tokens
        assert "encoder-decoder" in problem and engine.covered_layers == list(range(engine.n_decoder_layers))
    else:
        assert RECORDS[family].hybrid and engine.covered_layers != list(range(engine.n_decoder_layers))


def test_gemma2_soft_caps_are_honoured(loaded):
    """PaliGemma 2's Gemma 2 decoder soft-caps attention logits and final logits: the engine
    reproduces the unpatched model with them, and they change the logit in the tiny model."""
    engine, sample, _ = loaded("paligemma")
    text = engine.model.config.text_config
    assert text.attn_logit_softcapping and text.final_logit_softcapping
    recorded = engine.record(sample).logit
    assert abs(recorded - eager_logit(engine, sample)) <= 1e-5
    attentions = [layer.self_attn for layer in engine.decoder.layers]
    try:
        for attention in attentions:
            attention.attn_logit_softcapping = None
        assert abs(recorded - eager_logit(engine, sample)) > 1e-4
    finally:
        for attention in attentions:
            attention.attn_logit_softcapping = text.attn_logit_softcapping
    # the engine's own unembedding (fast path, logit lens) applies the final cap as the model does
    with torch.no_grad():
        hidden = engine.model.model(**sample.inputs, use_cache=False).last_hidden_state[:, -1]
        logits = engine.model(**sample.inputs, use_cache=False).logits[:, -1]
        torch.testing.assert_close(engine._unembed(hidden), logits)
        if engine.family.final_softcap_of(engine.model) is not None:    # the wrapper caps from transformers 5.23
            assert (engine.lm_head(hidden) - logits).abs().max() > 1e-3
