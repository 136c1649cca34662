"""hearlib.families.mllama: the tiny model's chat template renders the paper prompt as Llama 3.2 Vision
Instruct's does, and the image tokens (the cross-attention keys) lie per tile as the vision tower puts them."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from hearlib.families.mllama import mllama_keys, mllama_layout
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "mllama": ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
               f"<|image|>{PAPER_PROMPT}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
}


def test_the_template_renders_the_hub_format(tiny_model_dir):
    assert rendered(tiny_model_dir("mllama")) == EXPECTED["mllama"]


def test_the_image_tokens_are_the_vision_tower_s_outputs(tiny_model_dir, random_images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dir("mllama")
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor(images=random_images(1)[0], text=EXPECTED["mllama"], add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        states = model.model.vision_model(pixel_values=inputs["pixel_values"], aspect_ratio_ids=inputs["aspect_ratio_ids"],
                                          aspect_ratio_mask=inputs["aspect_ratio_mask"]).last_hidden_state
    assert states.shape[:4] == (1, 1, 1, 8 * 8 + 1)              # batch, images, tiles, class token + 8 × 8 patches
    assert mllama_keys(model.config, inputs) == 65
    real = SimpleNamespace(vision_config=SimpleNamespace(image_size=560, patch_size=14))
    assert mllama_keys(real, {"pixel_values": torch.zeros(1, 1, 4, 3, 1, 1)}) == 4 * (40 * 40 + 1)


def _layout(tiles_high, tiles_wide, max_tiles, aspect_id):
    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=16, patch_size=8))     # 2 × 2 patches + cls
    processor = SimpleNamespace(image_processor=SimpleNamespace(max_image_tiles=max_tiles))
    sample = SimpleNamespace(inputs={"pixel_values": torch.zeros(1, 1, max_tiles, 3, 16, 16),
                                     "aspect_ratio_ids": torch.tensor([[aspect_id]])})
    return mllama_layout(config, processor, sample, 32 * tiles_wide, 32 * tiles_high)


def test_one_tile_is_its_class_token_and_patch_grid():
    panels, non_spatial = _layout(1, 1, 1, 1)
    assert [p.name for p in panels] == ["tile 0,0"]
    assert np.array_equal(panels[0].tokens, [[1, 2], [3, 4]]) and panels[0].box == (0.0, 0.0, 32.0, 32.0)
    assert non_spatial == {"cls": (0,)}


def test_tiles_lie_row_major_on_the_canvas_and_padded_tiles_are_non_spatial():
    # max_image_tiles 4: aspect ratio id 2 is (1, 2), one tile high and two wide; two padded tiles follow
    panels, non_spatial = _layout(1, 2, 4, 2)
    assert [p.name for p in panels] == ["tile 0,0", "tile 0,1"]
    assert np.array_equal(panels[0].tokens, [[1, 2], [3, 4]]) and np.array_equal(panels[1].tokens, [[6, 7], [8, 9]])
    assert panels[0].box == (0.0, 0.0, 32.0, 32.0) and panels[1].box == (32.0, 0.0, 64.0, 32.0)
    assert non_spatial == {"cls": (0, 5), "padded tiles": tuple(range(10, 20))}
