"""hearlib.families.unlimited_ocr: the tiny template renders the paper prompt as DeepSeek-OCR's plain prompt (a
stand-in, not checked against hub files: none are here), and the tokens the layout names non-spatial are exactly
the model's own image_newline rows and view_separator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.families.janus import BOS
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {"unlimited_ocr": f"<image>\n{PAPER_PROMPT}"}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_plain_prompt(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_tokenizer_puts_bos_first(tiny_model_dir):
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir("unlimited_ocr")).tokenizer
    assert tokenizer.convert_ids_to_tokens(tokenizer("<image>")["input_ids"])[0] == BOS


def test_newlines_and_separator_are_the_models_own(tiny_model_dir):
    """2 × 2 tiles of 4 × 4 cells (8 × 9 with newlines), the global view 4 × 5, the separator: the layout's
    non-spatial tokens are the rows of get_image_features equal to image_newline / view_separator."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("unlimited_ocr"))
    rng = np.random.default_rng(0)
    sample = engine.prepare(Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")), answer="dog")
    layout = image_token_layout(engine, sample)
    assert [(p.name, p.shape) for p in layout.panels] == [("tiles", (8, 8)), ("global view", (4, 4))]
    assert sample.n_image == 8 * 9 + 4 * 5 + 1
    inputs = sample.inputs
    with torch.no_grad():
        features = engine.model.model.get_image_features(
            inputs["pixel_values"], inputs["pixel_values_local"], inputs["num_local_patches"],
            inputs["patches_grid"]).pooler_output[0]
    newline, separator = engine.model.model.image_newline, engine.model.model.view_separator
    is_newline = (features == newline).all(-1).numpy()
    is_separator = (features == separator).all(-1).numpy()
    np.testing.assert_array_equal(np.flatnonzero(is_newline), layout.non_spatial["row newlines"])
    np.testing.assert_array_equal(np.flatnonzero(is_separator), layout.non_spatial["view separator"])
    assert layout.non_spatial["view separator"] == (sample.n_image - 1,)
