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
    processor = FAMILY_RECORDS[family].give_chat_template(AutoProcessor.from_pretrained(folder))
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
    elif family == "pp_chart2table":   # PPChart2TableProcessor names no image token; the template writes <imgpad>
        assert processor.tokenizer.convert_tokens_to_ids("<imgpad>") == model.config.image_token_id
    elif family == "janus":   # JanusProcessor keeps the image token but not its id
        assert processor.tokenizer.convert_tokens_to_ids(processor.image_token) == model.config.image_token_id
    elif family == "molmo2":   # Molmo2Processor expands its <|image|> placeholder to rows of <im_patch> tokens
        assert processor.image_token == "<|image|>"
        assert processor.tokenizer.convert_tokens_to_ids("<im_patch>") == model.config.image_token_id
    elif family in ("blip-2", "instructblip"):   # Blip2Processor keeps its <image> as an AddedToken, and no id
        assert processor.tokenizer.convert_tokens_to_ids(str(processor.image_token)) == model.config.image_token_id
    else:
        assert model.config.image_token_id == processor.image_token_id
        assert processor.tokenizer.convert_tokens_to_ids(processor.image_token) == model.config.image_token_id
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    # every prompt word is in the vocabulary
    ids = processor.tokenizer(PAPER_PROMPT, add_special_tokens=False).input_ids
    assert processor.tokenizer.unk_token_id not in ids
    assert isinstance(FAMILY_RECORDS[family].decoder_of(model), torch.nn.Module)


def _image_tokens(family, model, inputs) -> int:
    """HeAr's image tokens: the image-token ids (an encoder-decoder's: in the encoder's input), or a cross-attention
    model's keys (Mllama: one <|image|> id)."""
    record = FAMILY_RECORDS[family]
    n_ids = int((inputs.input_ids == model.config.image_token_id).sum())
    if record.cross_attention_keys is not None:
        assert n_ids == 1
        return record.cross_attention_keys(model.config, inputs)
    return n_ids


def _cross_attention_states(model, inputs) -> torch.Tensor:
    """What a cross-attention model's decoder reads the image from (Mllama's cross_attention_states)."""
    captured = {}
    handle = FAMILY_RECORDS[model.config.model_type].decoder_of(model).register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(x=kwargs["cross_attention_states"]), with_kwargs=True)
    try:
        model(**inputs)
    finally:
        handle.remove()
    return captured["x"]


def test_image_tokens_match_features_and_forward(loaded):
    family, processor, model = loaded
    inputs = _inputs(processor, _image((48, 48)))
    n_image = _image_tokens(family, model, inputs)
    assert n_image == NUM_IMAGE_TOKENS[family]
    pixel_kwargs = {k: v for k, v in inputs.items() if k in ("image_sizes", "image_grid_thw", "image_merge_sizes",
                                                                       "high_res_pixel_values", "pixel_values_local",
                                                                       "num_local_patches", "patches_grid",
                                                                       "pixel_attention_mask", "image_token_pooling",
                                                                       "image_grids", "target_sizes", "spatial_shapes",
                                                                       "image_grid_hw", "qformer_input_ids",
                                                                       "qformer_attention_mask")}
    with torch.no_grad():
        # Video-LLaVA's processor names the pixels pixel_values_images, Fuyu's (legacy) image_patches
        pixels = next(inputs[name] for name in ("pixel_values", "pixel_values_images", "image_patches")
                      if name in inputs)
        # DeepSeek-VL's wrapper leaves get_image_features to its inner model
        image_features = (getattr(model, "get_image_features", None) or getattr(model.model, "get_image_features", None)
                          or (lambda **_: _cross_attention_states(model, inputs)))
        output = image_features(pixel_values=pixels, **pixel_kwargs)
        features = getattr(output, "pooler_output", output)
        if features is None and getattr(output, "deepstack_features", None) is None:   # Fuyu: the patch embeddings
            features = output.last_hidden_state
        if features is None:    # Granite 4 Vision: only (decoder layer, per-image features) pairs, added inside
            features = output.deepstack_features[0][1]
        if isinstance(features, (list, tuple)):
            features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
        out = model(**inputs)
    assert features.reshape(-1, features.shape[-1]).shape[0] == n_image
    # an encoder-decoder's logits are the decoder's (one start token by default), not the encoder's input's
    positions = 1 if FAMILY_RECORDS[family].encoder_decoder else inputs.input_ids.shape[1]
    assert out.logits.shape == (1, positions, model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()
    # the same image size gives the same count twice; other square sizes give it too
    for size in ((48, 48), (448, 448)):
        again = _inputs(processor, _image(size, seed=1))
        assert _image_tokens(family, model, again) == n_image
        assert again.input_ids.shape == inputs.input_ids.shape


# decoders whose eager attention has no key/value groups (the tiny model is multi-head, as the real one)
MULTI_HEAD_ONLY = {"unlimited_ocr": "modeling_unlimited_ocr.py's eager_attention_forward never calls repeat_kv",
                   "glm5_next": "Glm5NextTextConfig.validate_architecture requires num_key_value_heads == "
                                "num_attention_heads (MLA: kv_b_proj expands the latent for every head)",
                   "blip-2": "OPTAttention has one key/value head per query head (OPTConfig has no num_key_value_heads)",
                   "kimi_k25": "DeepseekV3Attention's kv_b_proj expands the latent into keys and values for every "
                               "query head (num_heads × (qk_nope_head_dim + v_head_dim)): no key/value groups",
                   "fuyu": "PersimmonAttention's query_key_value projects keys and values for every query head "
                           "(PersimmonConfig has no num_key_value_heads)",
                   "florence2": "BartAttention has one key/value head per query head (BartConfig has no "
                                "num_key_value_heads)"}


def test_gqa(loaded):
    family, _, model = loaded
    if family in MULTI_HEAD_ONLY:
        pytest.skip(f"{family}: {MULTI_HEAD_ONLY[family]}")
    text = model.config.text_config
    assert text.num_key_value_heads < text.num_attention_heads
    attention = FAMILY_RECORDS[family].attention_modules(model)[0]      # a hybrid decoder's first softmax layer
    assert attention.k_proj.out_features == text.num_key_value_heads * 16


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
