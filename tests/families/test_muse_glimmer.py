"""hearlib.families.muse_glimmer: the tiny templates render the paper prompt in the Muse chat format (a stand-in,
not checked against hub files: none are here), the image tokens are one grid of merged patch blocks
(vision_config.merge_size), and the engine unembeds as the wrapper does (soft-cap of logits × output_multiplier)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

MUSE = ("<|begin_of_text|><|start|>system<|message|>You are a helpful AI assistant.\nKnowledge cutoff: 04-01-2026.\n"
        'Reasoning strength: high.\n\n# Valid recipients: "self", "user".<|eot|>'
        f"<|start|>user<|message|><|patch|>{PAPER_PROMPT}<|eot|><|start|>assistant")
EXPECTED = {"muse_glimmer": MUSE, "muse_spark": MUSE}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_muse_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_image_tokens_are_one_grid_of_merged_blocks(model_type, tiny_model_dir):
    """A 2:1 image: <|patch|> count = t·h·w / merge², and one (h / merge) × (w / merge) grid over the image."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type))
    engine.resolution = None
    sample = engine.prepare(Image.new("RGB", (64, 32), "white"), answer="dog")
    t, h, w = (int(v) for v in sample.inputs["image_grid_thw"][0])
    merge = engine.model.config.vision_config.merge_size
    assert (t, h * w // merge**2) == (1, sample.n_image)
    layout = image_token_layout(engine, sample)
    (panel,) = layout.panels
    assert panel.shape == (h // merge, w // merge) and w > h
    np.testing.assert_array_equal(panel.tokens.ravel(), np.arange(sample.n_image))
    assert panel.box == (0.0, 0.0, 64.0, 32.0)


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_engine_unembeds_as_the_wrapper(model_type, tiny_model_dir):
    """The model's logits are 20·tanh(lm_head(h) · output_multiplier / 20); so are the engine's."""
    from PIL import Image

    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type))
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    text_config = engine.model.config.text_config
    with torch.no_grad():
        hidden = engine.model.model(**sample.inputs).last_hidden_state[0, -1]
        logits = engine.model(**sample.inputs).logits[0, -1]
        cap = text_config.final_logit_softcapping
        expected = cap * torch.tanh(engine.model.lm_head(hidden) * text_config.output_multiplier / cap)
        torch.testing.assert_close(logits, expected)
        torch.testing.assert_close(engine._unembed(hidden), expected)
