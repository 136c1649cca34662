"""hearlib.families.kimi_k25: the tiny template renders the paper prompt in Kimi's turn tokens (a stand-in: no
hub files here), and the image tokens are one row-major grid of image_grid_thw's 2 × 2 merged patches."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "kimi_k25": ("<|im_user|>user<|im_middle|><|media_begin|>image<|media_content|><|media_pad|><|media_end|>"
                 f"{PAPER_PROMPT}<|im_end|><|im_assistant|>assistant<|im_middle|>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_kimi_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_image_tokens_are_the_merged_patch_grid(tiny_model_dir):
    """(h / merge) × (w / merge) tokens from image_grid_thw, laid out row-major over the whole image."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("kimi_k25"), resolution=(48, 48), check=False)
    sample = engine.prepare(Image.new("RGB", (48, 48), "white"), answer="dog")
    t, rows, cols = (int(v) for v in sample.inputs["image_grid_thw"][0])
    merge = engine.processor.image_processor.merge_size
    assert (t, rows, cols) == (1, 12, 12) and sample.n_image == (rows // merge) * (cols // merge) == 36
    layout = image_token_layout(engine, sample)
    (panel,) = layout.panels
    np.testing.assert_array_equal(panel.tokens, np.arange(36).reshape(6, 6))
    assert panel.box == (0.0, 0.0, 48.0, 48.0) and not layout.non_spatial
