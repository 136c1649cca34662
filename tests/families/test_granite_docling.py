"""hearlib.families.granite_docling: the tiny template renders the paper prompt as granite-docling-258M's hub
template does (a stand-in: granite-for-docling-500m's own hub files are not available offline), the tiles of a
split page are the image tokens after each ``<row_r_col_c>`` tag, the thumbnail's after ``<global-img>``, and
the engine applies the wrapper's ``logits / logits_scaling``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "granite_docling": (f"<|start_of_role|>user<|end_of_role|><image>{PAPER_PROMPT}<|end_of_text|>\n"
                        "<|start_of_role|>assistant<|end_of_role|>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_a_split_page_is_tiles_row_major_then_the_thumbnail(tiny_model_dir):
    """A 128 × 64 page with splitting on: two 64 px tiles side by side and a thumbnail, each 4 × 4 tokens; the
    layout's tile r,c is the run of <image> tokens after the processor's <row_{r+1}_col_{c+1}> tag."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("granite_docling"), resolution=(128, 64))
    engine.processor.image_processor.crop_to_patches = True
    sample = engine.prepare(Image.new("RGB", (128, 64), "white"), answer="dog")
    layout = image_token_layout(engine, sample)
    assert [(p.name, p.shape, p.box) for p in layout.panels] == [
        ("tile 0,0", (4, 4), (0.0, 0.0, 64.0, 64.0)), ("tile 0,1", (4, 4), (64.0, 0.0, 128.0, 64.0)),
        ("thumbnail", (4, 4), (0.0, 0.0, 128.0, 64.0))]
    tokens = engine.tokenizer.convert_ids_to_tokens(sample.inputs["input_ids"][0].tolist())
    image_index = {int(p): i for i, p in enumerate(sample.image_positions)}
    for tag, name in (("<row_1_col_1>", "tile 0,0"), ("<row_1_col_2>", "tile 0,1"), ("<global-img>", "thumbnail")):
        start = tokens.index(tag) + 1
        run = [image_index[start + k] for k in range(16)]
        np.testing.assert_array_equal(layout.panel(name).tokens.ravel(), run)
        assert tokens[start + 16] != "<image>"


def test_the_engine_applies_the_logits_scaling(tiny_model_dir):
    """The fast path's unembedding divides by text_config.logits_scaling (0.5) as the wrapper does."""
    from PIL import Image

    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("granite_docling"))
    assert engine.model.config.text_config.logits_scaling == 0.5
    assert engine.family.logit_scale_of(engine.model) == 2.0
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    with torch.no_grad():
        output = engine.model(**sample.inputs, output_hidden_states=True)
        hidden = output.hidden_states[-1][0, -1]
        np.testing.assert_allclose(engine._unembed(hidden).numpy(), output.logits[0, -1].numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose((engine.lm_head(hidden) / 0.5).numpy(), output.logits[0, -1].numpy(),
                                   rtol=0, atol=1e-5)
