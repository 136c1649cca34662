"""HeAr on a hybrid decoder (docs/METHOD.md, "Hybrid decoders"), on the tiny Qwen3.5: decoder layers
linear (Gated DeltaNet) / full attention / linear / full attention.

HeAr's heads are the softmax-attention layers' heads only (N = 2 × 4, head n = l'·H + h with l' counting
the full-attention layers); the Gated DeltaNet layers run as the model runs them. The reference for one
ablated head is computed here by hand: the full-attention module's forward rewritten from its weights
(query/gate projection, norms, rotary, causal softmax per head, gate, output projection) with that head's
text queries reading the mean keys and values at the image positions, the means themselves captured by
the same rewrite from the reference images' forwards; no hearlib plan is involved. What holds alike for the
cross-attention models (the covered layers, all heads intact, own-image means, the fast method) is in
test_model_kinds.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.qwen3_5.modeling_qwen3_5 import apply_rotary_pos_emb

from hearlib.method.attention import ablation

FULL_ATTENTION = [1, 3]          # the tiny Qwen3.5's softmax-attention decoder layers


@pytest.fixture(scope="module")
def setup(kind_setup):
    """(engine, reference, images, sample, means) of the tiny Qwen3.5 (tests/method/conftest.py)."""
    return kind_setup("hybrid")


def by_hand(module, hidden, position_embeddings, image, text_start, capture=None, replace=None):
    """Qwen3_5Attention.forward from its weights under a causal mask; ``capture`` gets the keys (rotated)
    and values at the ``image`` positions; ``replace = (head, mean_k, mean_v)`` makes that query head's
    text queries read the mean keys/values at the image positions."""
    batch, seq, _ = hidden.shape
    dim = module.head_dim
    query, gate = torch.chunk(module.q_proj(hidden).view(batch, seq, -1, dim * 2), 2, dim=-1)
    query = module.q_norm(query).transpose(1, 2)
    key = module.k_norm(module.k_proj(hidden).view(batch, seq, -1, dim)).transpose(1, 2)
    value = module.v_proj(hidden).view(batch, seq, -1, dim).transpose(1, 2)
    query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
    if capture is not None:
        capture.append((key[0, :, image].clone(), value[0, :, image].clone()))
    group = query.shape[1] // key.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    outputs = []
    for head in range(query.shape[1]):
        k, v = key[0, head // group], value[0, head // group]
        scores = (query[0, head] @ k.T) * module.scaling
        probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        out = probs @ v
        if replace is not None and replace[0] == head:
            mean_k, mean_v = replace[1][head // group], replace[2][head // group]
            k_text, v_text = k.clone(), v.clone()
            k_text[image], v_text[image] = mean_k, mean_v
            text_scores = (query[0, head, text_start:] @ k_text.T) * module.scaling
            text_probs = text_scores.masked_fill(~causal[text_start:], float("-inf")).softmax(-1)
            out = torch.cat([out[:text_start], text_probs @ v_text])
        outputs.append(out)
    attended = torch.stack(outputs, dim=1).reshape(batch, seq, -1)
    return module.o_proj(attended * torch.sigmoid(gate.reshape(batch, seq, -1)))


def hooked_forward(model, inputs, layer, **by_hand_arguments):
    """The model's forward with decoder layer ``layer``'s attention computed :func:`by_hand`."""
    module = model.model.language_model.layers[layer].self_attn

    def hook(mod, args, kwargs, output):
        return by_hand(mod, kwargs["hidden_states"], kwargs["position_embeddings"], **by_hand_arguments), None

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            return model(**inputs, use_cache=False).logits[0, -1]
    finally:
        handle.remove()


def test_the_means_are_the_softmax_layers_image_keys_and_values(setup):
    engine, reference, images, _, means = setup
    assert engine.covered_layers == FULL_ATTENTION          # the rest of the coverage: test_model_kinds.py
    for ordinal, layer in enumerate(FULL_ATTENTION):
        captured = []
        for image in images[1:]:
            sample = engine.prepare(image)
            hooked_forward(reference, sample.inputs, layer, image=sample.image_positions,
                           text_start=sample.text_start, capture=captured)
        keys = torch.stack([k for k, _ in captured]).double().mean(0)
        values = torch.stack([v for _, v in captured]).double().mean(0)
        np.testing.assert_allclose(means.k[ordinal].double(), keys, rtol=0, atol=1e-5)
        np.testing.assert_allclose(means.v[ordinal].double(), values, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ordinal, head", [(0, 1), (1, 2)])
def test_ablating_one_head_is_the_hand_computed_attention(setup, literal, adjusted, ordinal, head):
    engine, reference, _, sample, means = setup
    heads = np.ones((1, engine.n_total_heads), bool)
    heads[0, ordinal * engine.n_heads + head] = False
    got = literal(engine, sample, means, heads)[0]
    logits = hooked_forward(reference, sample.inputs, FULL_ATTENTION[ordinal], image=sample.image_positions,
                            text_start=sample.text_start, replace=(head, means.k[ordinal], means.v[ordinal]))
    expected = adjusted(logits, sample.answer_id)
    assert abs(got - expected) <= 1e-5
    assert abs(got - engine.record(sample).logit) > 1e-4        # the ablation moved the logit


def test_the_linear_attention_layers_are_not_ablated(setup):
    """Ablating every head of the last softmax layer leaves every earlier layer's output as it was; ablating
    the first softmax layer changes the next Gated DeltaNet layer's output at the text positions only."""
    engine, _, _, sample, means = setup
    from hearlib.method.attention import LiteralPlan

    layers = engine.family.layers_of(engine.model)
    outputs = {}

    def run(heads):
        captured = {}
        handles = [layers[i].register_forward_hook(lambda m, a, out, i=i: captured.update({i: out.clone()}))
                   for i in range(len(layers))]
        plan = LiteralPlan(sample.text_start, sample.image_positions, means, torch.as_tensor(heads), None, None)
        try:
            with torch.no_grad(), ablation(plan):
                engine.model(**sample.inputs, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
        return captured

    outputs["intact"] = run(np.ones((1, 8), bool))
    last = np.ones((1, 8), bool)
    last[0, 4:] = False
    outputs["last"] = run(last)
    for i in range(3):
        assert torch.equal(outputs["intact"][i], outputs["last"][i])
    first = np.ones((1, 8), bool)
    first[0, :4] = False
    outputs["first"] = run(first)
    ts = sample.text_start
    assert torch.equal(outputs["intact"][0], outputs["first"][0])
    assert torch.allclose(outputs["intact"][2][:, :ts], outputs["first"][2][:, :ts], atol=1e-6)
    assert (outputs["intact"][2][:, ts:] - outputs["first"][2][:, ts:]).abs().max() > 1e-4


def test_head_outputs_include_the_output_gate(setup):
    """The logit lens reads each head's share of what o_proj receives: after Qwen3.5's sigmoid gate."""
    engine, _, _, sample, _ = setup
    record = engine.record(sample)
    attention = engine.family.attention_modules(engine.model)[1]
    captured = {}
    handle = attention.o_proj.register_forward_hook(lambda m, a, out: captured.update(out=out[0, -1].double()))
    try:
        with torch.no_grad():
            engine.model(**sample.inputs, use_cache=False)
    finally:
        handle.remove()
    assert torch.allclose(torch.as_tensor(record.head_outputs[1]).double().sum(0), captured["out"], atol=1e-5)


def test_check_family_passes():
    from hearlib.paper.coverage import check_family

    assert "literal path" in check_family("qwen3_5")
