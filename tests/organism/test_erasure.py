"""Design D2 (hearlib.organism.erasure): a linear concept eraser fitted on the object's tokens, folded into
the projector, leaves a plain transformers LLaVA whose projector erases the concept itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.organism import scenes
from hearlib.organism.erasure import fit_eraser, fold_into_linear, object_tokens


def _tokens_with_a_linear_concept(seed=0, n=120, p=6, width=10, classes=3):
    """Tokens [n, p, w] in which the label of each image is written linearly into the covered tokens."""
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in rng.integers(classes, size=n)]
    directions = rng.normal(size=(classes, width))
    feats = rng.normal(size=(n, p, width))
    cover = rng.random((n, p))
    for i, label in enumerate(labels):
        feats[i, cover[i] >= 0.5] += 3 * directions[int(label[1:])]
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(cover, dtype=torch.float32), labels


def test_the_erased_object_tokens_keep_no_linear_trace_of_the_concept():
    """LEACE's guarantee, checked directly: on the tokens it was fitted on, the erased tokens have zero
    covariance with the one-hot concept, while the raw tokens do not."""
    feats, cover, labels = _tokens_with_a_linear_concept()
    eraser = fit_eraser(feats, cover, labels)
    tokens, names = object_tokens(feats, cover, labels)
    onehot = np.eye(3)[[int(n[1:]) for n in names]]
    onehot -= onehot.mean(0)

    def cross_covariance(x):
        x = np.asarray(x, dtype=np.float64)
        return np.abs((x - x.mean(0)).T @ onehot / len(x)).max()

    assert cross_covariance(tokens) > 0.5
    assert cross_covariance(eraser(tokens.to(torch.float64))) < 1e-6


def test_folding_the_eraser_into_a_linear_layer_equals_erasing_then_applying_it():
    feats, cover, labels = _tokens_with_a_linear_concept(seed=1)
    eraser = fit_eraser(feats, cover, labels)
    linear = torch.nn.Linear(10, 7).double()
    x = torch.randn(50, 10, dtype=torch.float64)
    expected = linear(eraser(x))
    fold_into_linear(linear, eraser)
    torch.testing.assert_close(linear(x), expected, rtol=0, atol=1e-10)


def test_the_erased_organism_is_a_plain_llava_whose_projector_erases(tmp_path):
    """A tiny organism with the eraser folded into its projector saves and loads as a plain LLaVA (the same
    state-dict keys and shapes as an organism without one) and its projector's output equals the original
    projector's applied to the erased tokens."""
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    tokenizer = O.build_tokenizer()
    model = O.build_model(O.resolve_size("s"), tokenizer, 0, feature_layer=1)
    feats, cover, labels = _tokens_with_a_linear_concept(seed=2, p=8, width=model.config.vision_config.hidden_size)
    eraser = fit_eraser(feats, cover, labels)
    projector = model.model.multi_modal_projector
    x = torch.randn(5, 8, model.config.vision_config.hidden_size)
    with torch.no_grad():
        expected = projector(eraser(x.to(torch.float64)).float())
    plain = {k: v.shape for k, v in model.state_dict().items()}
    fold_into_linear(projector.linear_1, eraser)
    model.save_pretrained(tmp_path / "erased")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "erased")
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    assert {k: v.shape for k, v in loaded.state_dict().items()} == plain
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.multi_modal_projector(x), expected, rtol=1e-4, atol=1e-4)


def test_training_with_erase_records_the_gate_and_refuses_user_folders(tmp_path):
    """`hearlib train --erase category` on generated scenes: the saved organism records the erasure and
    its held-out probes; a folder without scene geometry (no object masks) is refused with one line."""
    import json

    from hearlib.organism.train import train_all

    torch.set_num_threads(1)
    scenes.generate(tmp_path / "data", 36, seed=scenes.TRAIN_SEED, progress=False)
    scenes.generate(tmp_path / "heldout", 24, seed=1, progress=False)
    source = tmp_path / "models" / "hear-organism-s"
    common = dict(progress=False, eval_alt_subset=2, vision_batch=16, decoder_batch=8)
    train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, heldout_dir=tmp_path / "heldout",
              vision_steps=4, decoder_steps={"hear-organism-s": 1}, **common)
    train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, heldout_dir=tmp_path / "heldout",
              vision_steps=0, vision_from=source, feature_layer=1, erase="category",
              decoder_steps={"hear-organism-s": 2}, name="erased", **common)
    meta = json.loads((tmp_path / "models" / "erased" / "hearlib_training.json").read_text())
    assert meta["erasure"]["concept"] == "category" and meta["erasure"]["fitted_on_tokens"] > 0
    assert set(meta["erasure"]["heldout_probe"]) == {"before", "after", "colour_after"}
    with pytest.raises(UserError, match="object masks"):
        fit_eraser(torch.zeros(2, 4, 3), None, ["a", "b"])
