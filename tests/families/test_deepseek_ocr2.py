"""hearlib.families.deepseek_ocr2: the tiny template renders the paper prompt as the stand-in plain prompt does
(the model card's ``<image>\\n{prompt}``; not checked against hub files, none here), and the image tokens are
the view's learned queries then the model's view_separator, all named non-spatial."""
from __future__ import annotations

import pytest
import torch

from hearlib.method.tokenprobes import decoder_inputs
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "deepseek_ocr2": f"<image>\n{PAPER_PROMPT}",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_stand_in_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_image_tokens_are_the_queries_then_the_view_separator(tiny_model_dir, random_images):
    """144 query outputs (query_768_resolution: the tiny view has 12 × 12 SAM patches after downsampling),
    then the decoder input at the last image position is the model's view_separator itself."""
    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("deepseek_ocr2"))
    sample = engine.prepare(random_images(1)[0], answer="dog")
    model = engine.model
    assert sample.n_image == model.model.vision_tower.query_768_resolution.num_embeddings + 1 == 145
    embeds = decoder_inputs(engine, sample)["inputs_embeds"][0, sample.image_positions].detach()
    assert torch.equal(embeds[-1], model.model.view_separator.detach())
    assert not torch.equal(embeds[-2], model.model.view_separator.detach())
    layout = image_token_layout(engine, sample)
    assert layout.panels == ()
    assert layout.non_spatial == {"global view queries": tuple(range(144)), "view separator": (144,)}
