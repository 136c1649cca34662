"""hearlib.families.fuyu: FuyuProcessor drops its chat template and places the image itself, so the record's
template renders the prompt text alone (as the model card passes it); the processor writes rows of |SPEAKER|
each closed by |NEWLINE|, then <s>, the prompt and <0x04>, and the layout puts the |SPEAKER| tokens on one
row-major grid."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {"fuyu": PAPER_PROMPT}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_prompt_alone(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_processor_writes_rows_of_patches_then_the_prompt(tiny_model_dir):
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("fuyu"), resolution=(48, 48), check=False)
    sample = engine.prepare(Image.new("RGB", (48, 48), "white"), answer="dog")
    tokens = engine.tokenizer.convert_ids_to_tokens(sample.inputs["input_ids"][0].tolist())
    rows = 48 // 8
    image_block = (["|SPEAKER|"] * rows + ["|NEWLINE|"]) * rows + ["<s>"]
    prompt = engine.tokenizer.convert_ids_to_tokens(engine.tokenizer(PAPER_PROMPT, add_special_tokens=False)["input_ids"])
    assert tokens == image_block + prompt + ["<0x04>"]
    assert sample.n_image == rows * rows and sample.inputs["image_patches"].shape[-2:] == (rows * rows, 8 * 8 * 3)
    layout = image_token_layout(engine, sample)
    (panel,) = layout.panels
    np.testing.assert_array_equal(panel.tokens, np.arange(rows * rows).reshape(rows, rows))
    assert panel.box == (0.0, 0.0, 48.0, 48.0) and not layout.non_spatial


def test_a_resolution_whose_last_patch_is_padding_is_refused(tiny_model_dir):
    from PIL import Image

    from hearlib.errors import UnsupportedModel
    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("fuyu"), resolution=(44, 44), check=False)
    sample = engine.prepare(Image.new("RGB", (44, 44), "white"), answer="dog")
    with pytest.raises(UnsupportedModel, match="not a whole number"):
        image_token_layout(engine, sample)
