"""hearlib.families.perception_lm: the tiny model's chat template renders the paper prompt as the hub's does, and
the image tokens lie on the thumbnail first, then on the canvas's tiles row-major, as the processor cuts them."""
from __future__ import annotations

import numpy as np
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that the "
          "user provides, and assist the user with a variety of tasks using natural language.")
EXPECTED = {
    "perception_lm": (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>"
                      f"<|start_header_id|>user<|end_header_id|>\n\n<|image|>{PAPER_PROMPT}<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}


def test_the_template_renders_the_hub_format(tiny_model_dir):
    assert rendered(tiny_model_dir("perception_lm")) == EXPECTED["perception_lm"]


def test_the_thumbnail_comes_first_then_the_tiles_row_major(tiny_model_dir):
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("perception_lm"))
    quadrants = np.zeros((48, 48, 3), np.uint8)                 # one colour per quadrant
    quadrants[:24, 24:] = (255, 0, 0)
    quadrants[24:, :24] = (0, 255, 0)
    quadrants[24:, 24:] = (0, 0, 255)
    sample = engine.prepare(Image.fromarray(quadrants), answer="dog")
    layout = image_token_layout(engine, sample)                 # at 448 × 448: a 2 × 2 canvas of 64 px tiles
    assert [p.name for p in layout.panels] == ["thumbnail", "tile 0,0", "tile 0,1", "tile 1,0", "tile 1,1"]
    assert sample.n_image == 5 * 16
    pixels = sample.inputs["pixel_values"][0]                    # [tiles, 3, 64, 64], normalised by 0.5 / 0.5
    for index, panel in enumerate(layout.panels):
        assert np.array_equal(panel.tokens, 16 * index + np.arange(16).reshape(4, 4))
        if index == 0:
            assert panel.box == (0.0, 0.0, 448.0, 448.0)
            continue
        x0, y0, x1, y1 = panel.box                             # a quarter of the image, each one colour
        colour = torch.tensor(quadrants[int(y0 + y1) // 2 * 48 // 448, int(x0 + x1) // 2 * 48 // 448] / 127.5 - 1)
        mean = pixels[index].float().mean(dim=(1, 2))
        assert torch.allclose(mean, colour.float(), atol=0.05), (panel.name, mean, colour)


def test_at_448_px_the_default_image_processor_gives_the_thumbnail_and_a_6_by_6_canvas():
    from types import SimpleNamespace

    from PIL import Image
    from transformers import PerceptionLMImageProcessor

    from hearlib.families.perception_lm import perception_lm_layout

    image_processor = PerceptionLMImageProcessor()                 # tile 448, at most 36 tiles, "thumb+tile"
    pixels = image_processor(images=Image.new("RGB", (448, 448)), return_tensors="pt")["pixel_values"]
    assert pixels.shape[:2] == (1, 37)
    processor = SimpleNamespace(image_processor=image_processor, patch_size=14)
    panels, non_spatial = perception_lm_layout(SimpleNamespace(projector_pooling_ratio=2), processor,
                                               SimpleNamespace(inputs={"pixel_values": pixels}), 448, 448)
    assert len(panels) == 37 and non_spatial == {}
    assert sum(p.tokens.size for p in panels) == 37 * 16 * 16
    assert panels[-1].name == "tile 5,5" and panels[-1].box == (448 * 5 / 6, 448 * 5 / 6, 448.0, 448.0)
