"""hearlib.families.idefics2: the tiny template renders the paper prompt as the hub's does, and the layout
names every resampler latent, view by view, as non-spatial."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "idefics2": f"User:<image>{PAPER_PROMPT}<end_of_utterance>\nAssistant:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_each_view_is_resampler_latents_between_boundary_tokens(tiny_model_dir):
    """16 <image> tokens (the resampler's latents) between two <fake_token_around_image>, no panels."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("idefics2"))
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    tokens = engine.tokenizer.convert_ids_to_tokens(sample.inputs["input_ids"][0].tolist())
    first, last = int(sample.image_positions[0]), int(sample.image_positions[-1])
    assert tokens[first - 1] == tokens[last + 1] == "<fake_token_around_image>"
    assert tokens[first:last + 1] == ["<image>"] * engine.model.config.perceiver_config.resampler_n_latents
    layout = image_token_layout(engine, sample)
    assert layout.panels == () and layout.non_spatial == {"image latents": tuple(range(16))}
    np.testing.assert_array_equal(layout.non_spatial_indices, np.arange(sample.n_image))
