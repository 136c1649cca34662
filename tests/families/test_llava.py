"""hearlib.families.llava: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "llava": f"USER: <image>\n{PAPER_PROMPT} ASSISTANT:",
    "llava_next": f"USER: <image>\n{PAPER_PROMPT} ASSISTANT:",
    "llava_onevision": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                        f"{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n"),
    "vipllava": f"USER: <image>\n{PAPER_PROMPT} ASSISTANT:",
    "llava_next_video": f"USER: <image>\n{PAPER_PROMPT} ASSISTANT:",
    "video_llava": f"USER: <image>\n{PAPER_PROMPT} ASSISTANT:",
    "fast_vlm": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                 f"{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_fast_vlm_image_tokens_are_fastvithd_s_last_feature_map_over_the_centre_crop(tiny_model_dir, random_images):
    import numpy as np
    import torch

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("fast_vlm"))
    sample = engine.prepare(random_images(1, size=(96, 48))[0], answer="dog")
    with torch.no_grad():
        features = engine.model.model.vision_tower(sample.inputs["pixel_values"]).last_hidden_state
    assert tuple(features.shape[-2:]) == (256 // 64, 256 // 64) and sample.n_image == 16
    (panel,) = image_token_layout(engine, sample).panels
    assert np.array_equal(panel.tokens, np.arange(16).reshape(4, 4))          # flatten(2): row-major
    # shortest edge 48 -> 256 scales 96 × 48 to 512 × 256; the centre 256 columns are x 24..72 of the image
    assert panel.box == (24.0, 0.0, 72.0, 48.0)
