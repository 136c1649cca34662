"""What the image tokens carry at the decoder's input (issue 38): each measurement against a direct
computation, on tiny models of four families and on data with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.families.geometry import Panel, TokenLayout, image_token_layout
from hearlib.method import tokenprobes as P
from hearlib.method.loading import load_engine

FAMILIES = ("llava", "qwen2_vl", "gemma3", "idefics3")


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_input_tokens_are_the_first_hidden_state_at_the_image_positions(family, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(family))
    sample = engine.prepare(random_images(1, seed=4)[0], answer="dog")
    tokens = P.decoder_input_tokens(engine, sample)
    with torch.no_grad():
        hidden = engine.model(**sample.inputs, use_cache=False, output_hidden_states=True).hidden_states[0]
    expected = hidden[0, sample.image_positions].float().numpy()
    assert tokens.shape == (sample.n_image, expected.shape[-1])
    np.testing.assert_array_equal(tokens, expected)
    # the hook is gone: a second forward runs through every layer
    assert engine.model(**sample.inputs, use_cache=False).logits.shape[1] == sample.seq_len


def test_token_coverage_is_the_share_of_each_cell_the_mask_covers():
    panel = Panel("image", np.array([[0, 1], [2, 3]]), (0.0, 0.0, 4.0, 4.0))
    layout = TokenLayout("toy", 5, (4, 4), (panel,), {"class": np.array([4])})
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True            # the left half
    mask[0, 2] = True             # one pixel of the top-right cell's four
    np.testing.assert_allclose(P.token_coverage(layout, mask), [1.0, 0.25, 1.0, 0.0, 0.0])
    # the same mask at twice the resolution gives the same shares
    np.testing.assert_allclose(P.token_coverage(layout, mask.repeat(2, 0).repeat(2, 1)), [1.0, 0.25, 1.0, 0.0, 0.0])


def test_token_coverage_on_a_tiny_llava_sample(tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir("llava"))
    sample = engine.prepare(random_images(1, seed=5)[0], answer="dog")
    layout = image_token_layout(engine, sample)
    assert np.all(P.token_coverage(layout, np.ones((64, 64), bool)) == 1.0)
    width = layout.image_size[0]
    left = np.zeros((64, 64), bool)
    left[:, :32] = True
    cover = P.token_coverage(layout, left)
    for panel in layout.panels:
        for (row, col), token in np.ndenumerate(panel.tokens):
            x0, _, x1, _ = panel.cell_boxes()[row, col]
            inside = np.clip((min(x1, width / 2) - x0) / (x1 - x0), 0, 1)
            assert cover[token] == pytest.approx(inside, abs=1 / 16)


def test_token_features_pick_the_object_the_background_and_single_tokens():
    tokens = np.arange(8 * 3, dtype=float).reshape(8, 3)
    cover = np.array([0.0, 0.6, 1.0, 0.4, 0.0, 0.0, 0.2, 0.5])
    features = P.token_features(tokens, cover, np.random.default_rng(0), n_single=4)
    np.testing.assert_array_equal(features["image mean"], tokens.mean(0))
    np.testing.assert_array_equal(features["object tokens"], tokens[[1, 2, 7]].mean(0))
    np.testing.assert_array_equal(features["best object token"], tokens[2])
    assert int(features["background token"][0] // 3) in (0, 4, 5)
    singles = features["any single token"]
    assert singles.shape == (4, 3) and len({tuple(r) for r in singles}) == 4
    # an object that covers no token fully: its best token stands for it
    assert np.array_equal(P.token_features(tokens, cover * 0.5, np.random.default_rng(0))["object tokens"], tokens[2])


@pytest.mark.parametrize("classifier", ["linear", "mlp"])
def test_probe_reads_a_separable_label_and_not_a_random_one(classifier):
    rng = np.random.default_rng(0)
    labels = np.repeat(["cat", "dog", "car"], 40)
    centres = {"cat": [4, 0], "dog": [0, 4], "car": [-4, -4]}
    features = np.array([centres[v] for v in labels]) + rng.normal(0, 0.5, (labels.size, 2))
    result = P.probe(features, labels, classifier=classifier)
    assert result["accuracy"] == 1.0 and result["chance"] == pytest.approx(1 / 3) and result["n"] == 120
    shuffled = rng.permutation(labels)
    assert P.probe(features, shuffled, classifier=classifier)["accuracy"] < 0.6


def test_probe_groups_keep_an_images_tokens_on_one_side():
    """Tokens of one image share a random vector and a random label: without groups the probe
    memorises images across folds; with groups it cannot, and falls to chance."""
    rng = np.random.default_rng(1)
    n_images, per_image = 60, 8
    image_vectors = rng.normal(size=(n_images, 16))
    image_labels = rng.choice(["a", "b"], n_images)
    features = np.repeat(image_vectors, per_image, axis=0) + rng.normal(0, 0.01, (n_images * per_image, 16))
    labels = np.repeat(image_labels, per_image)
    groups = np.repeat(np.arange(n_images), per_image)
    assert P.probe(features, labels, classifier="mlp")["accuracy"] > 0.9
    assert P.probe(features, labels, groups, classifier="mlp")["accuracy"] < 0.75
    with pytest.raises(ValueError, match="classifier"):
        P.probe(features, labels, classifier="forest")
