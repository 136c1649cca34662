"""Where the read happens (notebook 11): each measurement against a direct computation on tiny
models of four families (causal LLaVA, M-RoPE Qwen2-VL, Gemma 3's bidirectional image block,
Idefics3's pixel-shuffled tokens), and the analyses across samples on data with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method import readsite as R
from hearlib.method.means import compute_means
from hearlib.method.loading import load_engine

FAMILIES = ("llava", "qwen2_vl", "gemma3", "idefics3")


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(request.param))
    images = random_images(6, seed=3)
    means = compute_means(engine, images[2:], progress=False)
    target = engine.prepare(images[0], answer="dog")
    source = engine.prepare(images[1], answer="cat")
    return engine, means, target, source


def eager_outputs(engine, sample, **kwargs):
    """The model as shipped, with eager attention (no hearlib attention function)."""
    model = engine.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            return model(**sample.inputs, use_cache=False, **kwargs)
    finally:
        model.set_attn_implementation({"text_config": "hear"})


def test_window_masks_ablate_exactly_the_window():
    masks = R.window_masks(n_layers=4, n_heads=3, width=2)
    assert masks.shape == (3, 12)
    for start in range(3):
        ablated = np.flatnonzero(~masks[start])
        assert ablated.tolist() == list(range(start * 3, (start + 2) * 3))
    with pytest.raises(ValueError):
        R.window_masks(4, 3, 5)


def test_window_knockout_is_the_literal_ablation_of_whole_layers(setup):
    engine, means, target, _ = setup
    pi = R.window_knockout(engine, target, means, width=1)
    L, H = engine.n_layers, engine.n_heads
    by_hand = np.ones((L, L * H), dtype=bool)
    for layer in range(L):
        by_hand[layer, layer * H:(layer + 1) * H] = False
    literal = engine.normalized(target, means, by_hand, method="literal")
    assert pi.shape == (L,)
    assert np.abs(pi - literal).max() <= 1e-4
    assert np.abs(1 - literal).max() > 1e-3, "ablating a layer must move the logit"


def test_final_attention_is_the_eager_attention_of_the_last_position(setup):
    engine, _, target, _ = setup
    attention = R.final_attention(engine, target)          # [L, P_img], mean over heads
    eager = eager_outputs(engine, target, output_attentions=True).attentions
    image = target.image_positions
    expected = np.stack([a[0, :, -1, image].double().mean(0).numpy() for a in eager])
    assert attention.shape == (engine.n_layers, target.n_image)
    assert np.abs(attention - expected).max() <= 1e-5


def test_residuals_are_the_decoder_hidden_states(setup):
    engine, _, target, _ = setup
    final, image_mean = R.residuals(engine, target)
    states = eager_outputs(engine, target, output_hidden_states=True).hidden_states
    L = engine.n_layers
    assert final.shape[0] == image_mean.shape[0] == L + 1
    image = target.image_positions
    # rows 0..L-1: the embeddings and the outputs of layers 0..L-2, as transformers returns them
    for row in range(L):
        assert np.allclose(final[row], states[row][0, -1].float().numpy(), atol=1e-4)
        assert np.allclose(image_mean[row], states[row][0, image].float().mean(0).numpy(), atol=1e-4)
    # row L: the last layer's output before the final norm (transformers' last entry may be normed)
    norm = engine.final_norm
    with torch.no_grad():
        normed = norm(torch.as_tensor(final[L])[None]).numpy()[0]
    last = states[L][0, -1].float().numpy()
    assert np.allclose(final[L], last, atol=1e-4) or np.allclose(normed, last, atol=1e-4)


def test_patching_equals_replacing_the_attention_output_by_hand(setup):
    engine, _, target, source = setup
    if target.answer_id == source.answer_id:
        pytest.skip("the two answers tokenize alike")
    result = R.patch_final_heads(engine, source, target)
    a, b = source.answer_id, target.answer_id
    attention = engine.family.attention_modules(engine.model)
    captured = {}

    def keep(layer):
        def hook(module, args, output):
            captured[layer] = output[0][:, -1].detach().clone()
        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(attention)]
    try:
        with torch.no_grad():
            clean_a = engine.model(**source.inputs, use_cache=False).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        clean_b = engine.model(**target.inputs, use_cache=False).logits[0, -1].double()
    d_a, d_b = float(clean_a[a] - clean_a[b]), float(clean_b[a] - clean_b[b])
    moved = []
    for layer, module in enumerate(attention):
        def swap(module, args, output, layer=layer):
            replaced = output[0].clone()
            replaced[:, -1] = captured[layer]
            return (replaced, *output[1:])

        handle = module.register_forward_hook(swap)
        try:
            with torch.no_grad():
                logits = engine.model(**target.inputs, use_cache=False).logits[0, -1].double()
        finally:
            handle.remove()
        moved.append((float(logits[a] - logits[b]) - d_b) / (d_a - d_b))
    assert np.allclose(result["effect"], moved, atol=1e-3, rtol=1e-3)
    assert np.nanmax(np.abs(result["effect"])) > 1e-3, "patching a layer must move the logits"


def test_no_hook_is_left_behind(setup):
    engine, _, target, source = setup
    before = [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in engine.model.modules()]
    R.residuals(engine, target)
    R.patch_final_heads(engine, source, target)
    after = [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in engine.model.modules()]
    assert before == after


# ----------------------------------------------------------------------------- across samples

def test_question_dependence_is_the_mean_pearson_correlation():
    rng = np.random.default_rng(0)
    object_maps = rng.random((5, 3, 16))
    colour_maps = rng.random((5, 3, 16))
    same = R.question_dependence({"object": object_maps, "color": object_maps.copy()})
    assert np.allclose(same["correlation"], 1.0)
    out = R.question_dependence({"object": object_maps, "color": colour_maps})
    expected = [np.mean([np.corrcoef(object_maps[s, l], colour_maps[s, l])[0, 1] for s in range(5)])
                for l in range(3)]
    assert np.allclose(out["correlation"], expected)
    with pytest.raises(ValueError):
        R.question_dependence({"object": object_maps})


def test_probe_finds_the_layer_where_the_label_appears():
    rng = np.random.default_rng(1)
    labels = np.array(["cat", "dog", "car"] * 20)
    states = rng.normal(size=(60, 3, 8))
    code = {"cat": 0, "dog": 1, "car": 2}
    for i, label in enumerate(labels):           # the label is written into rows 2 only
        states[i, 2, code[label]] += 6.0
    probe = R.probe_by_layer(states, labels)
    assert probe["accuracy"][2] >= 0.95
    assert probe["accuracy"][0] <= 0.6
    assert probe["chance"] == pytest.approx(1 / 3)


def test_depth_and_peaks():
    assert R.relative_depth(0, 8) == 0.0 and R.relative_depth(7, 8) == 1.0
    assert R.relative_depth(3, 8) == pytest.approx(3 / 7)
    assert R.peak_layer([0.1, 0.5, 0.2]) == 1
    assert np.allclose(R.knockout_drop([[1.0, 0.5], [0.8, 0.5], [0.9, -40.0]]), [0.1, 0.5])   # the median
