"""hearlib.families.nemotron_h_omni: its tiny model's chat template renders the paper prompt (ChatML, the image as
``<image>`` and a newline; no hub template is stored here), HeAr covers its attention blocks only, and the layout's
grid is the published image processor's patch grid at 512 × 512, pixel-shuffled 2 × 2."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "nemotron_h_omni": f"<|im_start|>user\n<image>\n{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_expected_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_covered_layers_are_the_attention_blocks(tiny_model_dir):
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("nemotron_h_omni"))
    block_types = engine.family.text_config_of(engine.model.config).layers_block_type
    assert engine.covered_layers == [i for i, kind in enumerate(block_types) if kind == "full_attention"] == [1, 3]
    assert engine.n_total_heads == 2 * engine.n_heads


def test_the_grid_at_512_is_the_pixel_shuffled_patch_grid_of_the_published_processor():
    from PIL import Image
    from transformers import NemotronH_Omni_Reasoning_V3ImageProcessor

    from hearlib.families.nemotron_h_omni import nemotron_h_omni_layout

    inputs = NemotronH_Omni_Reasoning_V3ImageProcessor()(Image.new("RGB", (512, 512)), return_tensors="pt")
    assert inputs["image_grid_hw"].tolist() == [[32, 32]]               # 512 / 16
    panels, non_spatial = nemotron_h_omni_layout(SimpleNamespace(downsample_ratio=0.5), None,
                                                 SimpleNamespace(inputs=inputs), 512, 512)
    assert len(panels) == 1 and not non_spatial
    assert panels[0].tokens.ravel().tolist() == list(range(16 * 16))
