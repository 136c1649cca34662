"""The model registry and loader: the paper's checkpoints, clear errors for everything else."""
from __future__ import annotations

import json

import pytest

from hearlib.errors import UnsupportedModel, UserError
from hearlib.method.loading import CHECKPOINTS, FAMILIES, load_engine, resolve


def test_registry_holds_the_papers_ten_checkpoints():
    assert len(CHECKPOINTS) == 10
    families = sorted({c.family for c in CHECKPOINTS.values()})
    assert families == ["InternVL2.5", "LLaVA-1.5", "LLaVA-NeXT", "Qwen2-VL"]
    assert resolve("llava-1.5-7b") == ("llava-hf/llava-1.5-7b-hf", CHECKPOINTS["llava-1.5-7b"])
    # Families whose token count depends on the input size run at one fixed resolution.
    for checkpoint in CHECKPOINTS.values():
        assert (checkpoint.resolution is not None) == (checkpoint.model_type != "llava")


def test_unknown_architecture_is_a_clear_error_naming_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(UnsupportedModel) as error:
        load_engine(tmp_path)
    message = str(error.value)
    assert "'bert'" in message
    for family, _ in FAMILIES.values():
        assert family in message


def test_remote_code_is_never_enabled_silently(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "my_custom_vlm",
                                                      "auto_map": {"AutoConfig": "cfg.MyConfig"}}))
    with pytest.raises(UserError, match="never enables trust_remote_code"):
        load_engine(tmp_path)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        load_engine(tmp_path / "nowhere")


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_loads_a_local_folder_into_an_engine(family, tiny_model_dir):
    engine = load_engine(tiny_model_dir(family))
    assert engine.n_total_heads == engine.n_layers * engine.n_heads
    assert engine.model.config.text_config._attn_implementation == "hear"
    assert engine.model.config.vision_config._attn_implementation != "hear"


# ---------------------------------------------------------------------------------------
# The registry's geometry (docs/MODELS.md) against the real hub files and the processors
# ---------------------------------------------------------------------------------------
def _image(size, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def _chat(processor, prompt="Name the object."):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_registry_arithmetic_holds_for_every_row():
    from hearlib.method.loading import TEMPLATES

    for c in CHECKPOINTS.values():
        rows, cols = c.grid
        assert c.image_tokens == c.views * rows * cols + c.newline_tokens, c.name
        assert c.n_total_heads == c.layers * c.heads > 0, c.name
        assert c.heads % c.kv_heads == 0 and c.hidden % c.heads == 0, c.name
        assert c.template in TEMPLATES, c.name
        if c.resolution is not None:
            assert tuple(c.resolution) == tuple(c.input_size) == FAMILIES[c.model_type][1], c.name
    # checkpoints of one family and input size share the vision side
    for a in CHECKPOINTS.values():
        for b in CHECKPOINTS.values():
            if a.model_type == b.model_type:
                assert (a.grid, a.views, a.image_tokens, a.template) == (b.grid, b.views, b.image_tokens, b.template)


@pytest.mark.parametrize("name", [n for n, c in CHECKPOINTS.items() if c.checked])
def test_checked_rows_match_the_real_config_and_processor(name):
    """LLaVA-1.5-7B and Qwen2-VL-2B: config, processor and chat template from tests/data/hub."""
    from transformers import AutoConfig, AutoProcessor

    from hearlib.method.loading import TEMPLATES
    from hearlib.families.real import REAL_HUB

    c = CHECKPOINTS[name]
    folder = REAL_HUB / c.checked
    config = AutoConfig.from_pretrained(folder)
    text = config.text_config
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads, text.hidden_size) == (
        c.layers, c.heads, c.kv_heads, c.hidden)
    processor = AutoProcessor.from_pretrained(folder)
    chat = _chat(processor)
    assert chat == TEMPLATES[c.template].format(p="Name the object.")
    image_token = config.image_token_id
    for size in [c.input_size, (500, 375)]:        # the registry's input, and any photo resized to it
        image = _image(size).resize(c.resolution) if c.resolution else _image(size)
        inputs = processor(images=[image], text=[chat], return_tensors="pt")
        ids = inputs["input_ids"][0]
        positions = (ids == image_token).nonzero().flatten()
        assert positions.numel() == c.image_tokens
        assert int(positions[-1] - positions[0]) + 1 == c.image_tokens        # one contiguous block
        if c.model_type == "llava":
            vision = config.vision_config
            side = vision.image_size // vision.patch_size
            assert (side, side) == c.grid
            assert tuple(inputs["pixel_values"].shape[-2:]) == (c.input_size[1], c.input_size[0])
        else:
            merge = config.vision_config.spatial_merge_size
            thw = inputs["image_grid_thw"][0].tolist()
            assert thw == [1, c.input_size[1] // 14, c.input_size[0] // 14]
            assert (thw[1] // merge, thw[2] // merge) == c.grid
            # M-RoPE: the decoder's rotary sections cover its head size
            assert 2 * sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads


def test_llava_next_rows_follow_the_llava_next_processor():
    """1176 tokens for a 336 × 336 input, from transformers' own LlavaNextProcessor with the
    published image settings (grid pinpoints, 336 crops; not checked against a hub file here)
    and the Llama tokenizer of LLaVA-1.5."""
    import transformers as tf

    from hearlib.families.real import REAL_HUB

    c = CHECKPOINTS["llava-next-7b"]
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    image_processor = tf.LlavaNextImageProcessor(image_grid_pinpoints=pinpoints, size={"shortest_edge": 336},
                                                 crop_size={"height": 336, "width": 336})
    processor = tf.LlavaNextProcessor(image_processor=image_processor,
                                      tokenizer=tf.AutoTokenizer.from_pretrained(REAL_HUB / "llava-1.5-7b-hf"),
                                      patch_size=14, vision_feature_select_strategy="default",
                                      num_additional_image_tokens=1, image_token="<image>")
    inputs = processor(images=[_image(c.resolution)], text=["USER: <image>\nName it. ASSISTANT:"],
                       return_tensors="pt")
    assert int((inputs["input_ids"] == 32000).sum()) == c.image_tokens
    # base view + the two 336 tiles of the 336 × 672 pinpoint, padding removed when packed
    assert inputs["pixel_values"].shape[1] == 3


def test_internvl_rows_follow_the_internvl_image_processor():
    """One 448 tile for a 448 × 448 input (no thumbnail), 32 × 32 patches of 14 px, pixel shuffle
    0.5: 16 × 16 tokens. Image settings from the InternVL2.5 config, not checked here."""
    import transformers as tf

    c = CHECKPOINTS["internvl2.5-8b"]
    image_processor = tf.GotOcr2ImageProcessor(size={"height": 448, "width": 448}, crop_to_patches=True,
                                               min_patches=1, max_patches=12)
    out = image_processor(images=[_image(c.resolution)], return_tensors="pt")
    tiles = int(out["num_patches"][0])
    side = int(448 // 14 * 0.5)
    assert tiles == 1 and (side, side) == c.grid and tiles * side * side == c.image_tokens


def test_docs_models_table_is_the_registry():
    from pathlib import Path

    from hearlib.method.loading import models_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "MODELS.md").read_text()
    assert models_table() in docs
