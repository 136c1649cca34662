"""hearlib.families.deepseek_vl_hybrid: its tiny model's chat template renders the paper prompt as the hub's
does; both towers (SigLIP and the SAM high-resolution path) reach every image token."""
from __future__ import annotations

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that "
          "the user provides, and assist the user with a variety of tasks using natural language.\n\n")
EXPECTED = {
    "deepseek_vl_hybrid": f"{SYSTEM}User: <image_placeholder>{PAPER_PROMPT}\n\nAssistant:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("tower", ["pixel_values", "high_res_pixel_values"])
def test_each_tower_reaches_every_image_token(tower, tiny_model_dir, random_images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dir("deepseek_vl_hybrid")
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor(text=EXPECTED["deepseek_vl_hybrid"], images=random_images(1), return_tensors="pt")
    changed = dict(inputs, **{tower: inputs[tower] + 0.5})
    with torch.no_grad():
        before = model.model.get_image_features(inputs["pixel_values"], inputs["high_res_pixel_values"]).pooler_output
        after = model.model.get_image_features(changed["pixel_values"], changed["high_res_pixel_values"]).pooler_output
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    assert before.shape[1] == side * side == int((inputs.input_ids == model.config.image_token_id).sum())
    assert bool(((after - before).abs().amax(-1) > 1e-6).all())
