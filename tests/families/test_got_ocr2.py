"""hearlib.families.got_ocr2: PP-Chart2Table's tiny template renders GotOcr2Processor's conversation with
the image tokens written out, and the layout's grid is the projector's output grid."""
from __future__ import annotations

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

_SYSTEM = "You should follow the instructions carefully and explain your answers in detail."
EXPECTED = {
    "pp_chart2table": (f"<|im_start|>system\n{_SYSTEM}<|im_end|><|im_start|>user\n<img>" + "<imgpad>" * 256
                       + f"</img>\n{PAPER_PROMPT}<|im_end|><|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_layout_grid_is_the_projector_output_grid(tiny_model_dir):
    """The two stride-2 convolutions turn the tower's patch grid into the 16 × 16 grid the layout names."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("pp_chart2table"))
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    model = engine.model.model
    with torch.no_grad():
        tower = model.vision_tower(sample.inputs["pixel_values"]).last_hidden_state
        projector = model.multi_modal_projector
        grid = projector.conv_upsampler2(projector.conv_upsampler1(tower)).shape[-2:]
    layout = image_token_layout(engine, sample)
    assert [p.shape for p in layout.panels] == [tuple(grid)] == [(16, 16)]
    assert layout.n_tokens == sample.n_image == 256
