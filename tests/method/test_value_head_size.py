"""The fast path where a value head is not the size of a query/key head (multi-head latent attention:
DeepSeek-V3's keys are qk_nope_head_dim + qk_rope_head_dim wide, its values v_head_dim): it shapes each
head's output by the value, and gives the literal path's logits, on the tiny Kimi K2.5 (DeepSeek-V3 decoder)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.loading import load_engine
from hearlib.method.means import compute_means


@pytest.fixture(scope="module")
def setup(tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir("kimi_k25"))
    images = random_images(4, seed=2)
    means = compute_means(engine, images[1:], progress=False)
    return engine, means, engine.prepare(images[0], answer="dog")


def test_the_tiny_decoders_values_are_narrower_than_its_queries_and_keys(setup):
    engine, _, sample = setup
    shapes = {}
    attention = engine.family.attention_modules(engine.model)[0]
    handle = engine.family.output_projection_of(attention).register_forward_pre_hook(
        lambda module, args: shapes.update(heads_by_value=args[0].shape[-1]))
    try:
        engine.record(sample)
    finally:
        handle.remove()
    text = engine.family.text_config_of(engine.model.config)
    assert text.v_head_dim != text.qk_nope_head_dim + text.qk_rope_head_dim
    assert shapes["heads_by_value"] == engine.n_heads * text.v_head_dim
    assert sample.recorded.prefix_v[0].shape[-1] == text.v_head_dim
    assert sample.recorded.prefix_k[0].shape[-1] == text.qk_nope_head_dim + text.qk_rope_head_dim


@pytest.mark.parametrize("n_masks", [5, 24])      # 24: the last layer computes the last position only
def test_fast_equals_literal_when_value_heads_differ_in_size(setup, n_masks):
    engine, means, sample = setup
    rng = np.random.default_rng(n_masks)
    heads = rng.random((n_masks, engine.n_total_heads)) > 0.5
    image = rng.random((n_masks, sample.n_image)) > 0.3
    fast = engine.logits(sample, means, heads, image=image, method="fast", batch_size=n_masks)
    literal = engine.logits(sample, means, heads, image=image, method="literal")
    assert engine.path(sample) == "fast"
    assert np.abs(fast - literal).max() <= 1e-4
    assert np.ptp(literal) > 1e-3, "the masks must actually change the logit"
    with torch.no_grad():
        intact = engine.logits(sample, means, np.ones((1, engine.n_total_heads), bool), method="fast")
    assert abs(float(intact[0]) - engine.record(sample).logit) <= 1e-4
