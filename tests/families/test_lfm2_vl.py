"""hearlib.families.lfm2_vl: its tiny models' chat templates render the paper prompt as the hub's LFM2-VL template
does (LFM3-VL: with its image markers), HeAr covers their attention layers only, and LFM2-VL's grid is the
published processor's SigLIP2 patch grid unshuffled 2 × 2 at 512 × 512 (one tile)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "lfm2_vl": (f"<|startoftext|><|im_start|>user\n<image>{PAPER_PROMPT}<|im_end|>\n"
                "<|im_start|>assistant\n"),
    "lfm3_vl": (f"<|startoftext|><|im_start|>user\n<|image_start|><|image_pad|><|image_end|>{PAPER_PROMPT}"
                "<|im_end|>\n<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_covered_layers_are_the_attention_layers(model_type, tiny_model_dir):
    """LFM3-VL's sliding and full attention layers both count; its convolution layers do not."""
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type))
    layer_types = engine.family.text_config_of(engine.model.config).layer_types
    assert engine.covered_layers == [i for i, kind in enumerate(layer_types) if kind != "conv"] == [1, 3]
    assert engine.n_total_heads == 2 * engine.n_heads


def test_the_grid_at_512_is_the_unshuffled_patch_grid_of_the_published_processor():
    from PIL import Image
    from transformers import Lfm2VlImageProcessor

    from hearlib.families.lfm2_vl import lfm2_vl_layout

    image_processor = Lfm2VlImageProcessor()
    inputs = image_processor(Image.new("RGB", (512, 512)), return_tensors="pt")
    assert inputs["spatial_shapes"].tolist() == [[32, 32]]          # 512 / 16
    panels, non_spatial = lfm2_vl_layout(SimpleNamespace(downsample_factor=2),
                                         SimpleNamespace(image_processor=image_processor),
                                         SimpleNamespace(inputs=inputs), 512, 512)
    assert len(panels) == 1 and not non_spatial
    assert panels[0].tokens.ravel().tolist() == list(range(16 * 16))


def test_a_tiled_image_is_refused():
    from hearlib.errors import UnsupportedModel
    from hearlib.families.lfm2_vl import lfm2_vl_layout

    tiled = SimpleNamespace(inputs={"spatial_shapes": torch.tensor([[32, 32]] * 3)})
    with pytest.raises(UnsupportedModel, match="3 views"):
        lfm2_vl_layout(SimpleNamespace(downsample_factor=2),
                       SimpleNamespace(image_processor=SimpleNamespace(tile_size=512)), tiled, 1024, 512)
