"""hearlib.families.tiny: tiny random-weight models of every family load like hub checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.families.registry import FAMILIES as FAMILY_RECORDS
from hearlib.families.tiny import FAMILIES, NUM_IMAGE_TOKENS, build_tiny
from hearlib.prompts import PAPER_PROMPT

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PAPER_PROMPT}]}]
# what each family's template renders: tests/families/test_<lineage>.py


def _image(size, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, tmp_path_factory):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    family = request.param
    folder = build_tiny(family, tmp_path_factory.mktemp(f"testing-{family}"))
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    return family, processor, model


def _inputs(processor, image):
    text = processor.apply_chat_template(MESSAGES, add_generation_prompt=True)
    return processor(images=image, text=text, return_tensors="pt")


def test_image_token_ids(loaded):
    family, processor, model = loaded
    if family == "gemma3":   # Gemma3Processor's image_token is the <start_of_image> placeholder it expands
        assert processor.image_token == processor.tokenizer.boi_token == "<start_of_image>"
        assert processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.image_token) == model.config.image_token_id
    elif family == "ovis2":   # Ovis2Processor expands its <image> placeholder to <IMG_ATOM> tokens
        assert processor.image_token == "<image>" and processor.tokenizer.image_token == "<IMG_ATOM>"
        assert processor.tokenizer.convert_tokens_to_ids("<IMG_ATOM>") == model.config.image_token_id
    elif family == "aya_vision":   # AyaVisionProcessor expands its <image> placeholder to <|IMG_PATCH|> tokens
        assert processor.image_token == "<image>" and processor.img_patch_token == "<|IMG_PATCH|>"
        assert processor.tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>") == model.config.image_token_id
        assert model.config.image_token_id == processor.image_token_id
    else:
        assert model.config.image_token_id == processor.image_token_id
        assert processor.tokenizer.convert_tokens_to_ids(processor.image_token) == model.config.image_token_id
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    # every prompt word is in the vocabulary
    ids = processor.tokenizer(PAPER_PROMPT, add_special_tokens=False).input_ids
    assert processor.tokenizer.unk_token_id not in ids
    assert isinstance(FAMILY_RECORDS[family].decoder_of(model), torch.nn.Module)


def test_image_tokens_match_features_and_forward(loaded):
    family, processor, model = loaded
    inputs = _inputs(processor, _image((48, 48)))
    n_image = int((inputs.input_ids == model.config.image_token_id).sum())
    assert n_image == NUM_IMAGE_TOKENS[family]
    pixel_kwargs = {k: v for k, v in inputs.items() if k in ("image_sizes", "image_grid_thw", "image_merge_sizes")}
    with torch.no_grad():
        # Video-LLaVA's processor names the pixels pixel_values_images
        pixels = inputs["pixel_values"] if "pixel_values" in inputs else inputs["pixel_values_images"]
        # DeepSeek-VL's wrapper leaves get_image_features to its inner model
        image_features = getattr(model, "get_image_features", None) or model.model.get_image_features
        features = image_features(pixel_values=pixels, **pixel_kwargs)
        features = getattr(features, "pooler_output", features)
        if isinstance(features, (list, tuple)):
            features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
        out = model(**inputs)
    assert features.reshape(-1, features.shape[-1]).shape[0] == n_image
    assert out.logits.shape == (1, inputs.input_ids.shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()
    # the same image size gives the same count twice; other square sizes give it too
    for size in ((48, 48), (448, 448)):
        again = _inputs(processor, _image(size, seed=1))
        assert int((again.input_ids == model.config.image_token_id).sum()) == n_image
        assert again.input_ids.shape == inputs.input_ids.shape


def test_gqa(loaded):
    family, _, model = loaded
    text = model.config.text_config
    assert text.num_key_value_heads < text.num_attention_heads
    decoder = FAMILY_RECORDS[family].decoder_of(model)
    assert decoder.layers[0].self_attn.k_proj.out_features == text.num_key_value_heads * 16


def test_eager_matches_sdpa(loaded):
    family, processor, model = loaded
    decoder = FAMILY_RECORDS[family].decoder_of(model)
    if not decoder._supports_sdpa:
        pytest.skip(f"{type(decoder).__name__} has no SDPA attention (Gemma 2's soft-cap)")
    inputs = _inputs(processor, _image((48, 48)))
    try:
        model.set_attn_implementation({"text_config": "sdpa"})
        with torch.no_grad():
            sdpa = model(**inputs).logits
        model.set_attn_implementation({"text_config": "eager"})
        assert model.config.text_config._attn_implementation == "eager"
        with torch.no_grad():
            eager = model(**inputs).logits
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert torch.allclose(sdpa, eager, atol=1e-5, rtol=0)


def test_same_seed_same_weights(tmp_path):
    from safetensors.torch import load_file
    a = load_file(str(build_tiny("llava", tmp_path / "a", seed=3) / "model.safetensors"))
    b = load_file(str(build_tiny("llava", tmp_path / "b", seed=3) / "model.safetensors"))
    c = load_file(str(build_tiny("llava", tmp_path / "c", seed=4) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_unknown_family(tmp_path):
    with pytest.raises(ValueError):
        build_tiny("blip", tmp_path)


def test_command_line_writes_build_tinys_folder(tmp_path, capsys):
    """``python -m hearlib.families.tiny tiny``: the folder build_tiny writes (same weights at the same
    seed, another seed differs), loadable by the Auto classes; ``list`` names every family."""
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    from hearlib.families.tiny import main
    assert main(["tiny", "--family", "gemma3", "--out", str(tmp_path / "cli"), "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    main(["tiny", "--family", "gemma3", "--out", str(tmp_path / "other"), "--seed", "4"])
    cli = load_file(str(tmp_path / "cli" / "model.safetensors"))
    api = load_file(str(build_tiny("gemma3", tmp_path / "api", seed=3) / "model.safetensors"))
    other = load_file(str(tmp_path / "other" / "model.safetensors"))
    assert cli.keys() == api.keys() and all(torch.equal(cli[k], api[k]) for k in cli)
    assert any(not torch.equal(cli[k], other[k]) for k in cli)
    rendered = [AutoProcessor.from_pretrained(tmp_path / folder).apply_chat_template(MESSAGES, add_generation_prompt=True)
                for folder in ("cli", "api")]
    assert rendered[0] == rendered[1] and "<start_of_image>" in rendered[0]
    capsys.readouterr()
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == list(FAMILIES)


def test_command_line_refuses_an_unknown_family(tmp_path, capsys):
    from hearlib.families.tiny import main
    with pytest.raises(SystemExit) as stop:
        main(["tiny", "--family", "blip", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
    assert "invalid choice: 'blip'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
