"""hearlib.families.aria: the tiny template renders the paper prompt as the hub's does, and the image tokens
are the projector's learned queries, named non-spatial."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "aria": (f"<|im_start|>user\n<fim_prefix><|img|><fim_suffix>{PAPER_PROMPT}<|im_end|>\n"
             "<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_image_tokens_are_the_projector_queries(tiny_model_dir):
    """As many <|img|> tokens as projector_patch_to_query_dict gives the tower's patch count, all non-spatial."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("aria"))
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    config = engine.model.config
    patches = (sample.inputs["pixel_values"].shape[-1] // config.vision_config.patch_size) ** 2
    assert sample.n_image == config.projector_patch_to_query_dict[patches] == 16
    layout = image_token_layout(engine, sample)
    assert layout.panels == () and layout.non_spatial == {"image queries": tuple(range(16))}
    np.testing.assert_array_equal(layout.non_spatial_indices, np.arange(sample.n_image))
