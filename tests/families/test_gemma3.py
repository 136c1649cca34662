"""hearlib.families.gemma3: its tiny models' chat templates render the paper prompt as the hub's do; Gemma 3n's
kv-shared layers, per-layer embeddings and AltUp streams are followed by the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "gemma3": (f"<bos><start_of_turn>user\n<start_of_image>{PAPER_PROMPT}<end_of_turn>\n<start_of_turn>model\n"),
    "gemma3n": (f"<bos><start_of_turn>user\n<image_soft_token>{PAPER_PROMPT}<end_of_turn>\n<start_of_turn>model\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.fixture(scope="module")
def gemma3n(tiny_model_dir, random_images):
    """(engine, recorded sample, means from two other images) of the tiny Gemma 3n."""
    from hearlib.method.loading import load_engine
    from hearlib.method.means import compute_means

    engine = load_engine(tiny_model_dir("gemma3n"))
    images = random_images(3)
    sample = engine.prepare(images[0], answer="dog")
    engine.record(sample)
    return engine, sample, compute_means(engine, images[1:], progress=False)


def test_gemma3n_kv_shared_layers_read_the_keys_and_values_of_the_last_earlier_layer_of_their_kind(gemma3n):
    engine, sample, _ = gemma3n
    layers = engine.family.layers_of(engine.model)
    assert [hasattr(layer.self_attn, "k_proj") for layer in layers] == [True, True, False, False]
    keys, values = engine.image_keys_values(sample)                  # [L, KVH, P_img, D]: what each layer reads
    assert engine.n_layers == 4 and not torch.equal(keys[0], keys[1])
    for shared, source in ((2, 0), (3, 1)):                          # (sliding, full, sliding, full)
        assert torch.equal(keys[shared], keys[source]) and torch.equal(values[shared], values[source])


def test_gemma3n_fast_path_gives_each_text_token_its_per_layer_embedding(gemma3n):
    engine, sample, _ = gemma3n
    language_model = engine.model.model.language_model
    expected = language_model.get_per_layer_inputs(sample.inputs["input_ids"])[:, sample.text_start:]
    assert torch.equal(sample.recorded.text_inputs["per_layer_inputs"], expected)


def test_gemma3n_fast_path_equals_the_literal_path_on_a_batch_of_masks(gemma3n):
    engine, sample, means = gemma3n
    rng = np.random.default_rng(0)
    heads = rng.random((20, engine.n_total_heads)) > 0.5             # 20 ≥ 16 masks: enough to group by layer
    assert engine.path(sample) == "fast"
    fast = engine.logits(sample, means, heads, method="fast")
    literal = engine.logits(sample, means, heads, method="literal")
    assert np.ptp(literal) > 1e-3
    np.testing.assert_allclose(fast, literal, atol=1e-4, rtol=0)


def test_gemma3n_residuals_are_the_active_altup_stream(gemma3n):
    from hearlib.method.readsite import residuals

    engine, sample, _ = gemma3n
    final, image_mean = residuals(engine, sample)
    with torch.no_grad():
        states = engine.model(**sample.inputs, output_hidden_states=True).hidden_states
    active = engine.model.config.text_config.altup_active_idx
    assert final.shape == image_mean.shape == (engine.n_layers + 1, engine.model.config.text_config.hidden_size)
    for layer in range(engine.n_layers):
        np.testing.assert_allclose(final[layer + 1], states[layer + 1][active, 0, -1].float().numpy(), atol=1e-6)
