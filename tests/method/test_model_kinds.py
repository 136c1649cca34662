"""What holds alike for every model kind whose HeAr heads are those of some decoder layers only
(tests/method/conftest.py ``KINDS``: the tiny Mllama's cross-attention layers, the tiny Qwen3.5's
softmax-attention layers, the tiny Florence-2's decoder cross-attention over its encoder; docs/METHOD.md,
"Cross-attention models", "Hybrid decoders", "Encoder-decoder models"): N counts the
covered layers' heads, all heads intact is the model as shipped, own-image means make the full ablation
a no-op, and the fast method falls back to the literal path with a warning. What is particular to a kind
is in its own file (test_cross_attention.py, test_hybrid.py, test_encoder_decoder.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.attention import RecordPlan, ablation
from hearlib.method.means import compute_means


def test_the_engine_covers_the_kind_s_layers_only(kind):
    spec, engine, _, _, sample, _ = kind
    assert getattr(engine.family, spec.flag) and engine.covered_layers == list(spec.covered)
    n_covered = len(spec.covered)                     # every tiny decoder has 4 heads a layer
    assert (engine.n_decoder_layers, engine.n_layers, engine.n_heads, engine.n_total_heads) == (
        spec.decoder_layers, n_covered, 4, 4 * n_covered)
    layers = engine.family.layers_of(engine.model)
    assert [hasattr(layer, spec.layer_attribute) for layer in layers] == [
        i in spec.covered for i in range(spec.decoder_layers)]
    assert [m.hear_layer for m in engine.family.attention_modules(engine.model)] == list(range(n_covered))
    assert spec.coverage in engine.coverage and engine.environment()["coverage"] == engine.coverage
    assert engine.environment()["covered"] == {"kind": spec.flag.replace("_", "-"), "layers": list(spec.covered),
                                               "decoder_layers": spec.decoder_layers}
    plan = RecordPlan(sample.text_start, sample.image_positions)
    with torch.no_grad(), ablation(plan):
        engine.model(**sample.inputs, use_cache=False)
    assert sorted(plan.keys) == list(range(n_covered))      # hearlib's attention ran in the covered layers only
    assert engine.record(sample).text_to_image.shape[:2] == (n_covered, 4)


def test_all_heads_intact_is_the_unpatched_eager_model(kind, literal, adjusted):
    _, engine, reference, _, sample, means = kind
    with torch.no_grad():
        expected = adjusted(reference(**sample.inputs, use_cache=False).logits[0, -1], sample.answer_id)
    got = literal(engine, sample, means, np.ones((1, engine.n_total_heads), bool))[0]
    assert abs(got - expected) <= 1e-5
    assert abs(engine.record(sample).logit - expected) <= 1e-5
    assert engine.sanity["ok"]                                    # the load-time check ran and passed


def test_means_of_the_sample_s_own_image_make_full_ablation_a_no_op(kind, literal):
    _, engine, _, images, sample, means = kind
    own = compute_means(engine, [images[0]], progress=False)
    ablated = np.zeros((1, engine.n_total_heads), bool)
    assert abs(literal(engine, sample, own, ablated)[0] - engine.record(sample).logit) <= 1e-5
    assert abs(literal(engine, sample, means, ablated)[0] - engine.record(sample).logit) > 1e-4   # other images' do not


def test_the_fast_method_warns_and_runs_the_literal_path(kind, literal):
    spec, engine, _, _, sample, means = kind
    heads = np.random.default_rng(0).random((3, engine.n_total_heads)) > 0.5
    assert spec.fast_path_problem in engine.fast_path_problem(sample)
    assert engine.path(sample, "fast") == "literal"
    with pytest.warns(RuntimeWarning, match=spec.fast_path_problem):
        fast = engine.logits(sample, means, heads, method="fast")
    np.testing.assert_array_equal(fast, literal(engine, sample, means, heads))


def test_a_cross_attention_model_s_literal_path_runs_what_lies_before_its_decoder_once(kind, literal):
    """The tower, projector and encoder hold no covered head, so the literal path reruns only the decoder on the
    inputs the recorded forward gave it, and gets what the whole model under the same masks gives."""
    spec, engine, _, images, _, means = kind
    heads = np.random.default_rng(1).random((3, engine.n_total_heads)) > 0.5
    sample = engine.prepare(images[0], answer="dog")
    whole = literal(engine, sample, means, heads)                   # not recorded yet: the whole model per mask
    engine.record(sample)
    calls = []
    handle = engine.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        reused = literal(engine, sample, means, heads)
    finally:
        handle.remove()
    np.testing.assert_allclose(reused, whole, rtol=0, atol=1e-5)
    assert len(calls) == (0 if engine.family.cross_attention else 3)
    assert abs(whole - engine.record(sample).logit).max() > 1e-4            # the masks change the answer
