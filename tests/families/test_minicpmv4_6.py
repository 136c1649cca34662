"""hearlib.families.minicpmv4_6: its tiny models' chat templates render the paper prompt as the hub's MiniCPM-V 4.6
template does, HeAr covers their full-attention layers only, and the layout's grid is the source image's patch grid
after the merges the published processors apply at 448 × 448 (no slices)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

MINICPMV = ("<|im_start|>user\n"
            f"<|image_pad|>\n{PAPER_PROMPT}<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n")
EXPECTED = {"minicpmv4_6": MINICPMV, "minicpmv4_7": MINICPMV, "minicpm_ocr": MINICPMV}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_covered_layers_are_the_full_attention_layers(model_type, tiny_model_dir):
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type))
    layer_types = engine.family.text_config_of(engine.model.config).layer_types
    assert engine.covered_layers == [i for i, kind in enumerate(layer_types) if kind == "full_attention"] == [1, 3]


@pytest.mark.parametrize("processor_class, downsample, grid", [
    ("MiniCPMV4_6ImageProcessor", "16x", 8),      # 448 / 14 = 32 patches, window merger and merger: / 4
    ("MiniCPMOcrImageProcessor", "4x", 16),       # no window merger: / 2
])
def test_the_grid_at_448_is_the_merged_patch_grid_of_the_published_processor(processor_class, downsample, grid):
    import transformers
    from PIL import Image

    from hearlib.families.minicpmv4_6 import minicpmv_layout

    image_processor = getattr(transformers, processor_class)()
    inputs = image_processor(Image.new("RGB", (448, 448)), return_tensors="pt")
    assert inputs["target_sizes"].tolist() == [[32, 32]]
    panels, non_spatial = minicpmv_layout(SimpleNamespace(downsample_mode=downsample),
                                          SimpleNamespace(image_processor=image_processor),
                                          SimpleNamespace(inputs=inputs), 448, 448)
    assert len(panels) == 1 and not non_spatial
    assert panels[0].tokens.shape == (grid, grid)
    assert panels[0].tokens.ravel().tolist() == list(range(grid * grid))


def test_a_sliced_image_is_refused():
    from hearlib.errors import UnsupportedModel
    from hearlib.families.minicpmv4_6 import minicpmv_layout

    sliced = SimpleNamespace(inputs={"target_sizes": torch.tensor([[32, 32], [32, 32], [32, 32]])})
    processor = SimpleNamespace(image_processor=SimpleNamespace(scale_resolution=448))
    with pytest.raises(UnsupportedModel, match="2 slices"):
        minicpmv_layout(SimpleNamespace(downsample_mode="16x"), processor, sliced, 896, 448)
