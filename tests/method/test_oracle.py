"""An ablation oracle written from the paper's definition (Eq. 5), sharing no code with the engine.

For an ablated head (l, h), every text query (the positions after the image) reads, at the image
positions, the mean key and value over reference images instead of the sample's own; image and
prefix queries, and every other head, are untouched. The oracle is an attention function of its
own, registered with transformers beside hearlib's: the model computes its projections, norms and
rotary embeddings as shipped, and hands the oracle the rotated queries, keys, values, its own
eager mask, the scale and the soft-cap; the oracle expands key/value heads, substitutes, and
computes softmax(q·kᵀ)·v by hand. Compared with ``engine.logits`` (fast and literal) for single
heads, random masks and the full ablation on tiny models of five kinds of family, each mask first
checked to move the logit by more than ten times the tolerance. The mutations at the end break the engine on
purpose and check that this comparison fails."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from hearlib.method.means import MeanKV, compute_means
from hearlib.method.loading import load_engine

# causal MHA/GQA (LLaVA), bidirectional image block + sliding window (Gemma 3), soft-capped
# bidirectional prefix (PaliGemma on Gemma 2), M-RoPE (Qwen2-VL), pixel-shuffled tokens (Idefics3)
KINDS = {"llava": "causal, GQA", "gemma3": "bidirectional image block, sliding window",
         "paligemma": "soft-capped bidirectional prefix", "qwen2_vl": "M-RoPE, GQA", "idefics3": "causal, shuffled"}
ORACLE = "hear_oracle"
TOLERANCE = 2e-6      # measured: engine and oracle agree within 1.2e-7; the masks move the logit by >= 2e-3
_STATE: dict = {}


def oracle_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """softmax(q·kᵀ·scale [soft-capped] + mask)·v, with the chosen heads' text queries reading the
    mean keys/values at the image positions. query [B, H, S, D]; key/value [B, KVH, S, D]."""
    n_heads, n_kv = query.shape[1], key.shape[1]
    group = n_heads // n_kv
    keys = key.repeat_interleave(group, dim=1).double()
    values = value.repeat_interleave(group, dim=1).double()
    q = query.double()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5

    def logits(q_rows, k_rows):
        s = q_rows @ k_rows.transpose(-1, -2) * scale
        return torch.tanh(s / softcap) * softcap if softcap is not None else s

    scores = logits(q, keys)
    ablated = _STATE.get("heads", {}).get(id(module), ())
    image, text = _STATE.get("image"), _STATE.get("text")
    v_by_row = values[:, :, None].expand(-1, -1, q.shape[2], -1, -1).clone()     # [B, H, S(query), S(key), D]
    for h in ablated:
        kv = h // group
        mean_k = _STATE["means"].k[_STATE["layer_of"][id(module)], kv].double()     # [P_img, D]
        mean_v = _STATE["means"].v[_STATE["layer_of"][id(module)], kv].double()
        for t in text:
            scores[:, h, t, image] = logits(q[:, h, t:t + 1], mean_k[None])[:, 0]
            v_by_row[:, h, t, image] = mean_v
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : keys.shape[-2]].double()
    probs = scores.softmax(-1)
    out = torch.einsum("bhqk,bhqkd->bhqd", probs, v_by_row)
    return out.transpose(1, 2).contiguous().to(query.dtype), probs.to(query.dtype)


AttentionInterface.register(ORACLE, oracle_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ORACLE, eager_mask)


@contextlib.contextmanager
def oracle(engine, sample, means, heads_ablated):
    """The model runs on the oracle for the duration; ``heads_ablated``: flat head indices l·H + h."""
    model = engine.model
    modules = engine.family.attention_modules(model)
    ids = sample.inputs["input_ids"][0]
    image = (ids == engine.image_token_id).nonzero().flatten()
    text = list(range(int(image[-1]) + 1, ids.numel()))
    per_module = {}
    for n in heads_ablated:
        per_module.setdefault(id(modules[n // engine.n_heads]), []).append(n % engine.n_heads)
    _STATE.update(heads=per_module, image=image, text=text, means=means,
                  layer_of={id(m): i for i, m in enumerate(modules)})
    model.set_attn_implementation({engine.family.text_config: ORACLE})
    try:
        yield
    finally:
        model.set_attn_implementation({engine.family.text_config: "hear"})
        _STATE.clear()


@torch.no_grad()
def oracle_logit(engine, sample, means, heads_ablated) -> float:
    """The answer's logit minus the mean logit at the last position, under the oracle."""
    with oracle(engine, sample, means, heads_ablated):
        logits = engine.model(**sample.inputs, use_cache=False).logits[0, -1].double()
    return float(logits[sample.answer_id] - logits.mean())


def masks_under_test(engine, rng):
    n = engine.n_total_heads
    rows = [np.ones(n, bool), np.zeros(n, bool)]                 # all intact, full ablation
    for head in (0, engine.n_heads - 1, n - 1):                  # single heads: first, last of layer 0, last
        row = np.ones(n, bool)
        row[head] = False
        rows.append(row)
    rows += list(rng.random((3, n)) > 0.5)                        # random masks
    return np.stack(rows)


@pytest.fixture(scope="module", params=list(KINDS))
def setup(request, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(request.param))
    images = random_images(6, seed=11)
    means = compute_means(engine, images[1:], progress=False)
    sample = engine.prepare(images[0], answer="dog")
    masks = masks_under_test(engine, np.random.default_rng(5))
    expected = np.array([oracle_logit(engine, sample, means, np.flatnonzero(~row)) for row in masks])
    return engine, means, sample, masks, expected


def test_the_masks_move_the_logit_far_beyond_the_tolerance(setup):
    engine, _, _, masks, expected = setup
    intact = expected[0]
    scale = max(1.0, abs(intact))
    moved = np.abs(expected[1:] - intact)
    assert moved.min() > 10 * TOLERANCE * scale, f"{engine.family.model_type}: a mask leaves the logit: {moved}"


@pytest.mark.parametrize("method", ["fast", "literal"])
def test_the_engine_equals_the_oracle(setup, method):
    engine, means, sample, masks, expected = setup
    got = engine.logits(sample, means, masks, method=method, batch_size=len(masks))
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= TOLERANCE * scale, (engine.family.model_type, got - expected)


def test_the_oracle_with_nothing_ablated_is_the_model_itself(setup):
    engine, _, sample, _, expected = setup
    model = engine.model
    model.set_attn_implementation({engine.family.text_config: "eager"})
    try:
        with torch.no_grad():
            logits = model(**sample.inputs, use_cache=False).logits[0, -1].double()
    finally:
        model.set_attn_implementation({engine.family.text_config: "hear"})
    own = float(logits[sample.answer_id] - logits.mean())
    assert abs(expected[0] - own) <= TOLERANCE * max(1.0, abs(own))


def test_the_families_cover_softcap_and_gqa(setup):
    engine = setup[0]
    config = engine.family.text_config_of(engine.model.config)
    if engine.family.model_type == "paligemma":
        assert getattr(config, "attn_logit_softcapping", None)
    if engine.family.model_type in ("llava", "qwen2_vl"):
        assert engine.n_kv_heads < engine.n_heads


# ----------------------------------------------------------------------------- mutations

def _swap_two_heads(monkeypatch):
    from hearlib.method import fastpath as module     # the fast path's mask of kept heads
    original = module.keep_mask

    def swapped(layer, n_heads, heads, text, image):
        heads = heads.clone()
        heads[:, [0, 1]] = heads[:, [1, 0]]
        return original(layer, n_heads, heads, text, image)
    monkeypatch.setattr(module, "keep_mask", swapped)


def _zeros_for_means(monkeypatch):
    from hearlib.method import engine as module
    original = module.Engine.logits

    def zeroed(self, sample, means, *args, **kwargs):
        zero = MeanKV(torch.zeros_like(means.k), torch.zeros_like(means.v), dict(means.meta))
        return original(self, sample, zero, *args, **kwargs)
    monkeypatch.setattr(module.Engine, "logits", zeroed)


def _image_queries_too(monkeypatch):
    from hearlib.method import attention as module
    original = module.LiteralPlan.__init__

    def from_the_image(self, text_start, image_positions, *args, **kwargs):
        original(self, int(image_positions[0]), image_positions, *args, **kwargs)
    monkeypatch.setattr(module.LiteralPlan, "__init__", from_the_image)


MUTATIONS = {"swap two heads' mask bits": (_swap_two_heads, "fast"),
             "zeros instead of the means": (_zeros_for_means, "fast"),
             "image queries ablated too": (_image_queries_too, "literal")}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_oracle_catches_a_broken_engine(setup, mutation, monkeypatch):
    engine, means, sample, masks, expected = setup
    if engine.family.model_type != "llava":
        pytest.skip("one family is enough to show the comparison fails")
    apply, method = MUTATIONS[mutation]
    apply(monkeypatch)
    got = engine.logits(sample, means, masks, method=method, batch_size=len(masks))
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() > 100 * TOLERANCE * scale, f"{mutation} went unnoticed"
