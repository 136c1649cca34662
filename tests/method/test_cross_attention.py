"""HeAr on a cross-attention model (docs/METHOD.md, "Cross-attention models"), on the tiny Mllama: decoder
layers self-attention / cross-attention / self-attention / cross-attention, the image read only by the
cross-attention layers' MllamaTextCrossAttention over the vision tower's 65 outputs (8 × 8 patches and a
class token, one tile).

HeAr's heads are the cross-attention heads (N = 2 × 4, head n = l'·H + h with l' counting the cross-attention
layers), the image tokens their 65 keys. Under head n ablated, every query of that head that reads the image
(the prefix ones, which transformers lets read every key, and the text ones with u_t = 0) reads the mean key
and value of each image key instead of the sample's own. The reference is written here by hand: the
cross-attention module's forward rewritten from its weights (query projection and norm, key projection and
norm, value projection, the cross-attention mask rebuilt from the processor's ``cross_attention_mask``, one
softmax per head, output projection), and the means captured by the same rewrite from the reference images'
forwards of the model as shipped; no hearlib plan is involved. What holds alike for the hybrid decoders
(the covered layers, all heads intact, own-image means, the fast method) is in test_model_kinds.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.errors import UserError
from hearlib.method.attention import LiteralPlan, RecordPlan, ablation
from hearlib.method.generation_hook import intervene

CROSS_ATTENTION = [1, 3]         # the tiny Mllama's cross-attention decoder layers
KEYS = 8 * 8 + 1                 # its cross-attention keys: one tile of 8 × 8 patches and a class token


@pytest.fixture(scope="module")
def setup(kind_setup):
    """(engine, reference, images, sample, means) of the tiny Mllama (tests/method/conftest.py)."""
    return kind_setup("cross-attention")


def may_read(cross_attention_mask: torch.Tensor, keys_per_tile: int) -> torch.Tensor:
    """bool [S, K]: query t may read key j. The processor marks, per text position, the tiles it may read
    (from the <|image|> token on); a position that may read none (the prefix) reads every key, as
    transformers' _prepare_cross_attention_mask makes it (its fully masked rows become zero rows)."""
    tiles = cross_attention_mask[0].reshape(cross_attention_mask.shape[1], -1).bool()      # [S, tiles]
    allowed = tiles.repeat_interleave(keys_per_tile, dim=1)
    return allowed | ~allowed.any(-1, keepdim=True)


def by_hand(module, hidden, states, allowed, capture=None, replace=None):
    """MllamaTextCrossAttention.forward from its weights; ``capture`` gets the keys (after k_norm) and
    values; ``replace = (rows, mean_k, mean_v)`` makes query head h's queries where ``rows[h]`` [H, S] is
    True read the mean keys and values."""
    batch, seq, _ = hidden.shape
    dim = module.head_dim
    query = module.q_norm(module.q_proj(hidden).view(batch, seq, -1, dim).transpose(1, 2))
    key = module.k_norm(module.k_proj(states).view(batch, -1, module.num_key_value_heads, dim).transpose(1, 2))
    value = module.v_proj(states).view(batch, -1, module.num_key_value_heads, dim).transpose(1, 2)
    if capture is not None:
        capture.append((key[0].clone(), value[0].clone()))
    group = query.shape[1] // key.shape[1]
    outputs = []
    for head in range(query.shape[1]):
        k, v = key[0, head // group], value[0, head // group]
        q = query[0, head]
        if replace is not None and bool(replace[0][head].any()):
            rows, mean_k, mean_v = replace[0][head], replace[1][head // group], replace[2][head // group]
            scores = torch.where(rows[:, None], q @ mean_k.T, q @ k.T) * module.scaling
            probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
            out = torch.where(rows[:, None], probs @ mean_v, probs @ v)
        else:
            probs = ((q @ k.T) * module.scaling).masked_fill(~allowed, float("-inf")).softmax(-1)
            out = probs @ v
        outputs.append(out)
    return module.o_proj(torch.stack(outputs, dim=1).reshape(batch, seq, -1))


def hooked_forward(model, inputs, arguments: dict):
    """The model's forward with the cross-attention of each decoder layer in ``arguments`` computed
    :func:`by_hand` with that layer's keyword arguments."""
    allowed = may_read(inputs["cross_attention_mask"], KEYS)

    def hook_of(layer):
        def hook(mod, args, kwargs, output):
            passed = kwargs["attention_mask"][0, 0] > torch.finfo(kwargs["attention_mask"].dtype).min / 2
            assert torch.equal(passed, allowed)          # the mask rebuilt here is the one the model uses
            return by_hand(mod, kwargs["hidden_states"], kwargs["cross_attention_states"], allowed,
                           **arguments[layer]), None
        return hook

    layers = model.model.language_model.layers
    handles = [layers[layer].cross_attn.register_forward_hook(hook_of(layer), with_kwargs=True) for layer in arguments]
    try:
        with torch.no_grad():
            return model(**inputs, use_cache=False).logits[0, -1]
    finally:
        for handle in handles:
            handle.remove()


def means_by_hand(model, engine, images, layer):
    """Mean keys and values of decoder layer ``layer``'s cross-attention over ``images``, captured by
    :func:`by_hand` from each image's forward of the model as shipped (the paper prompt)."""
    captured = []
    for image in images:
        hooked_forward(model, engine.prepare(image).inputs, {layer: dict(capture=captured)})
    return (torch.stack([k for k, _ in captured]).double().mean(0).float(),
            torch.stack([v for _, v in captured]).double().mean(0).float())


def test_the_image_tokens_are_the_cross_attention_keys(setup):
    """The image tokens are the 65 keys of each cross-attention layer, a text query's whole attention; the
    self-attention layers never run under a plan. (Which layers and heads are covered: test_model_kinds.py.)"""
    engine, _, _, sample, _ = setup
    assert engine.covered_layers == CROSS_ATTENTION
    layers = engine.family.layers_of(engine.model)
    assert [layers[i].self_attn.hear_layer for i in (0, 2)] == [None, None]    # never under a plan
    ids = sample.inputs["input_ids"][0]
    assert int((ids == engine.image_token_id).sum()) == 1
    assert sample.text_start == int((ids == engine.image_token_id).nonzero()) + 1
    assert sample.n_image == KEYS and torch.equal(sample.image_positions.cpu(), torch.arange(KEYS))
    plan = RecordPlan(sample.text_start, sample.image_positions)
    with torch.no_grad(), ablation(plan):
        engine.model(**sample.inputs, use_cache=False)
    assert sorted(plan.keys) == [0, 1] and plan.keys[0].shape == (2, KEYS, 16)
    record = engine.record(sample)
    assert record.text_to_image.shape == (2, 4, sample.n_text, KEYS)
    assert np.allclose(record.image_attention, 1.0)          # a text query's attention is all on image keys


def test_the_means_are_the_cross_attention_keys_and_values_averaged_by_hand(setup):
    engine, reference, images, _, means = setup
    for ordinal, layer in enumerate(CROSS_ATTENTION):
        mean_k, mean_v = means_by_hand(reference, engine, images[1:], layer)
        assert torch.allclose(means.k[ordinal].float(), mean_k, atol=1e-6)
        assert torch.allclose(means.v[ordinal].float(), mean_v, atol=1e-6)


@pytest.mark.parametrize("ordinal, head, ablated_text", [(0, 1, []), (1, 2, []), (1, 2, [0, 3, -1]),
                                                         (None, None, [0, 3, -1])])
def test_a_head_and_some_text_tokens_ablated_is_the_hand_written_cross_attention(setup, literal, adjusted, ordinal,
                                                                                  head, ablated_text):
    """Query t of head n reads the means where x_n · u_t = 0: every query of the ablated head (the prefix ones
    included, which have no u), and the ablated text tokens' queries of every head in both cross layers."""
    engine, reference, images, sample, means = setup
    heads = np.ones((1, engine.n_total_heads), bool)
    if ordinal is not None:
        heads[0, ordinal * engine.n_heads + head] = False
    text = np.ones((1, sample.n_text), bool)
    text[0, ablated_text] = False
    arguments = {}
    for index, layer in enumerate(CROSS_ATTENTION):
        rows = torch.zeros(engine.n_heads, sample.seq_len, dtype=torch.bool)
        rows[:, sample.text_start:] = torch.as_tensor(~text[0])
        if index == ordinal:
            rows[head] = True
        mean_k, mean_v = means_by_hand(reference, engine, images[1:], layer)
        arguments[layer] = dict(replace=(rows, mean_k, mean_v))
    expected = hooked_forward(reference, sample.inputs, arguments)
    assert abs(literal(engine, sample, means, heads, text)[0] - adjusted(expected, sample.answer_id)) <= 1e-5
    plan = LiteralPlan(sample.text_start, sample.image_positions, means, torch.as_tensor(heads),
                       torch.as_tensor(text), None)
    with torch.no_grad(), ablation(plan):
        got = engine.model(**sample.inputs, use_cache=False).logits[0, -1]
    assert (got - expected).abs().max() <= 1e-5                      # every logit, not only the answer's
    with torch.no_grad():
        intact = reference(**sample.inputs, use_cache=False).logits[0, -1]
    assert (got - intact).abs().max() > 1e-3                         # the ablation moved the logits


def test_the_self_attention_layers_are_not_ablated(setup, literal):
    engine, reference, _, sample, means = setup
    outputs = {}

    def keep(name):
        def hook(module, args, kwargs, output):
            outputs[name] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        return hook

    first = engine.family.layers_of(engine.model)[0]
    handle = first.register_forward_hook(keep("ablated"), with_kwargs=True)
    try:
        literal(engine, sample, means, np.zeros((1, engine.n_total_heads), bool))
    finally:
        handle.remove()
    handle = reference.model.language_model.layers[0].register_forward_hook(keep("eager"), with_kwargs=True)
    try:
        with torch.no_grad():
            reference(**sample.inputs, use_cache=False)
    finally:
        handle.remove()
    assert torch.allclose(outputs["ablated"], outputs["eager"], atol=1e-6)


def test_generation_with_a_head_ablated_starts_from_the_literal_logits(setup, literal, adjusted):
    engine, _, _, sample, means = setup
    heads = np.ones((1, engine.n_total_heads), bool)
    heads[0, 1] = heads[0, 6] = False
    with torch.no_grad(), intervene(engine, [(0, 1), (1, 2)], mode="ablate", means=means):
        out = engine.model.generate(**sample.inputs, max_new_tokens=2, do_sample=False, output_logits=True,
                                    return_dict_in_generate=True)
    assert abs(adjusted(out.logits[0][0], sample.answer_id) - literal(engine, sample, means, heads)[0]) <= 1e-5
    plan = LiteralPlan(sample.text_start, sample.image_positions, means, torch.as_tensor(heads), None, None)
    with torch.no_grad(), ablation(plan):
        expected = engine.model(**sample.inputs, use_cache=False).logits[0, -1]
    assert (out.logits[0][0] - expected).abs().max() <= 1e-5
    with torch.no_grad():
        intact = engine.model.generate(**sample.inputs, max_new_tokens=2, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True)
    assert (out.logits[0][0] - intact.logits[0][0]).abs().max() > 1e-3
    assert (out.logits[1][0] - intact.logits[1][0]).abs().max() > 1e-3       # the cached step is ablated too
    with pytest.raises(UserError, match="cross-attention layer"):
        with intervene(engine, [(0, 1)], mode="scale", scale=0.5):
            pass


@pytest.mark.slow
def test_the_coverage_check_passes():
    from hearlib.paper.coverage import check_family

    assert "65 image tokens; literal path" in check_family("mllama")
