"""Commands that need no guessing (issue 37, item 6), through the command line on a tiny LLaVA:
``attribute`` without ``--answer`` attributes the model's own greedy answer and says so; ``--n-masks``
defaults to the quick profile's M; ``generate`` writes the unintervened generation beside the
intervened one, equal to a plain run without intervention."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_collect import tiny_model_files

from hearlib.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llava(tiny_model_dir, random_images, tmp_path_factory):
    """(engine, model folder, image file, means file) of the tiny LLaVA."""
    return tiny_model_files("llava", tiny_model_dir, random_images, tmp_path_factory.mktemp("defaults"))


def greedy(engine, sample, max_new_tokens):
    """A plain greedy ``generate``, nothing intervened: (new tokens, first-step logits float32)."""
    with torch.no_grad():
        out = engine.model.generate(**sample.inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    output_logits=True, return_dict_in_generate=True)
    return out.sequences[0, sample.seq_len:].tolist(), out.logits[0][0].float().numpy().astype(np.float32)


def test_attribute_without_answer_attributes_the_models_greedy_answer(llava, tmp_path, capsys):
    engine, model, image, means = llava
    base = ["attribute", "--model", model, "--image", str(image), "--means", str(means), "--n-masks", "20"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "model" / "summary.json").read_text())
    (first,), _ = greedy(engine, engine.prepare(image), 1)            # the model's own first generated token
    word = engine.tokenizer.decode([first]).strip()
    assert summary["answer_source"] == "model" and summary["answer"] == word
    assert summary["answer_tokens"] == engine.tokenizer.convert_ids_to_tokens([first])
    assert summary["predicted_token"] == summary["answer_tokens"][0] and summary["correct"] is True
    assert "the model's own greedy answer" in out and f"answer {word!r} (the model's own answer)" in out
    # the same numbers as naming that answer with --answer, which then says 'given'
    assert main([*base, "--answer", word, "--out", str(tmp_path / "given")]) == 0
    given = json.loads((tmp_path / "given" / "summary.json").read_text())
    assert given["answer_source"] == "given" and "given with --answer" in capsys.readouterr().out
    if given["answer_tokens"][:1] == summary["answer_tokens"]:           # the word tokenizes back to the token
        assert given["logit_intact"] == pytest.approx(summary["logit_intact"], abs=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / "given" / "coef.npy"),
                                   np.load(tmp_path / "model" / "coef.npy"), atol=1e-9)


def test_n_masks_defaults_to_the_quick_profiles(llava):
    _, model, image, means = llava
    profile = yaml.safe_load((ROOT / "notebooks" / "profiles" / "quick.yaml").read_text())
    args = build_parser(["attribute"]).parse_args(["attribute", "--model", model, "--image", str(image),
                                                   "--means", str(means), "--out", "x"])
    assert args.n_masks == profile["n_masks"] and args.answer is None
    help_text = build_parser(["attribute"])._subparsers._group_actions[0].choices["attribute"].format_help()
    assert f"default {profile['n_masks']:,}" in help_text and "quick.yaml" in help_text


@pytest.mark.parametrize("mode", ["ablate", "scale"])
def test_generate_writes_the_unintervened_generation_beside(llava, tmp_path, mode):
    engine, model, image, means = llava
    extra = ["--means", str(means)] if mode == "ablate" else ["--scale", "0"]
    assert main(["generate", "--model", model, "--image", str(image), "--heads", "0.0,0.1,1.1", "--mode", mode,
                 *extra, "--max-new-tokens", "3", "--out", str(tmp_path)]) == 0
    generation = json.loads((tmp_path / "generation.json").read_text())
    intact_first = np.load(tmp_path / "first_logits_intact.npy")
    tokens, first = greedy(engine, engine.prepare(image), 3)          # a plain run, nothing intervened
    intact = generation["intact"]
    assert intact["tokens"] == tokens and intact["text"] == engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert intact["token_strings"] == engine.tokenizer.convert_ids_to_tokens(tokens)
    assert intact_first.dtype == np.float32 and intact_first.shape == first.shape
    np.testing.assert_array_equal(intact_first, first)
    assert intact["first_token"] == int(first.argmax()) == tokens[0]
    # the intervened output keeps its names, and differs from the intact one
    assert np.load(tmp_path / "first_logits.npy").shape == first.shape
    assert not np.array_equal(np.load(tmp_path / "first_logits.npy"), intact_first)
