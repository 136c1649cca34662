"""hearlib.families.granite4_vision: the tiny template renders the paper prompt in Granite's roles (a stand-in:
the checkpoint's hub files are not available offline), the layout's newlines are where the model puts its
image_newline, and the image reaches the decoder only as the projectors' features added at the image
positions (the embeddings there are zeroed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.tokenprobes import decoder_inputs
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "granite4_vision": (f"<|start_of_role|>user<|end_of_role|><image>{PAPER_PROMPT}<|end_of_text|>\n"
                        "<|start_of_role|>assistant<|end_of_role|>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_stand_in_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_image_is_added_inside_the_decoder_and_newlines_are_the_image_newline(tiny_model_dir):
    """The embeddings at the 36 image positions are zero; the decoder gets one feature set per target layer
    (0: the layerwise projector, 1: the spatial ones), whose rows at the layout's newline tokens, and nowhere else,
    are the model's image_newline (pack_image_features appends it after each projected row)."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("granite4_vision"))
    rng = np.random.default_rng(0)
    sample = engine.prepare(Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")), answer="dog")
    layout = image_token_layout(engine, sample)
    assert [(p.name, p.shape) for p in layout.panels] == [("base", (4, 4)), ("high-res", (4, 4))]
    np.testing.assert_array_equal(layout.non_spatial["newline"], 16 + 5 * np.arange(4) + 4)
    inputs = decoder_inputs(engine, sample)
    assert not inputs["inputs_embeds"][0, sample.image_positions].any()
    features = inputs["deepstack_features"]
    assert sorted(features) == [0, 1]
    newlines = np.array(layout.non_spatial["newline"])
    for injected in features.values():
        assert injected.shape == (sample.n_image, 64)
        newline = engine.model.model.image_newline.detach()
        torch.testing.assert_close(injected[newlines], newline.expand(len(newlines), -1))
        others = np.setdiff1d(np.arange(sample.n_image), newlines)
        assert (injected[others] - newline).abs().amax(-1).min() > 1e-4
