"""hearlib.families.apertus1p5: the tiny template renders the paper prompt as the stand-in Apertus turns do (not
checked against hub files, none here); the image tokens are the text-table embeddings of the VQ codes, one row
of the grid between each pair of eol tokens; and, with the VQ encoder made local, inverting a corner of the
image changes the codes of the cells the layout puts there and no code far from it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.tokenprobes import decoder_inputs
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "apertus1p5": f"<|user_start|><|image|>{PAPER_PROMPT}<|user_end|><|assistant_start|>",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_stand_in_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from hearlib.method.loading import load_engine

    side = 32                                             # the tiny image processor's size: no resampling
    return load_engine(tiny_model_dir("apertus1p5"), resolution=(side, side))


def _codes(engine, sample) -> np.ndarray:
    model = engine.model.model
    with torch.no_grad():
        codes = model.get_image_tokens(sample.inputs["pixel_values"], sample.inputs["image_sizes"])[0]
    return (codes - engine.model.config.image_token_offset).numpy()


def test_image_tokens_are_the_code_embeddings_row_by_row(engine, random_images):
    """Each grid row's tokens are contiguous and followed by an eol token (the last by eoi); the decoder input at
    each image position is the text embedding of its code + image_token_offset."""
    from hearlib.families.geometry import image_token_layout

    sample = engine.prepare(random_images(1)[0], answer="dog")
    layout = image_token_layout(engine, sample)
    (panel,) = layout.panels
    assert panel.shape == (8, 8) and layout.non_spatial == {}
    ids = sample.inputs["input_ids"][0]
    positions = sample.image_positions[torch.as_tensor(panel.tokens)]
    tokenizer = engine.processor.tokenizer
    after_rows = ids[positions[:, -1] + 1].tolist()
    assert after_rows == [tokenizer.convert_tokens_to_ids("<|image_eol|>")] * 7 + [
        tokenizer.convert_tokens_to_ids("<|image_end|>")]
    assert (positions[:, 1:] - positions[:, :-1] == 1).all()
    embeds = decoder_inputs(engine, sample)["inputs_embeds"][0, sample.image_positions].detach()
    table = engine.model.get_input_embeddings().weight.detach()
    codes = torch.as_tensor(_codes(engine, sample))
    assert torch.equal(embeds, table[codes + engine.model.config.image_token_offset])


def test_a_changed_corner_changes_the_codes_the_layout_puts_there(engine, random_images):
    """The VQ encoder made local (GroupNorms as identities: they normalise over the whole image; the mid-block
    attention's proj_out zeroed), on a 128 px image (32 × 32 codes): inverting the top-left 32 × 16 px changes
    some code among the cells there and none of the cells 32 px or more away (the 3 × 3 convolutions' reach)."""
    from types import SimpleNamespace

    from PIL import Image

    from hearlib.families.apertus1p5 import code_grid_layout

    model, processor = engine.model, engine.processor
    vq = model.model.vision_tokenizer
    norms = [m for m in vq.modules() if isinstance(m, torch.nn.GroupNorm)]
    proj_out = vq.encoder.mid.attn_1.proj_out
    weight, bias = proj_out.weight.detach().clone(), proj_out.bias.detach().clone()
    size = processor.image_processor.size
    try:
        for norm in norms:
            norm.forward = lambda x: x
        with torch.no_grad():
            proj_out.weight.zero_()
            proj_out.bias.zero_()
        processor.image_processor.size = {"min_pixels": 128 * 128, "max_pixels": 128 * 128}
        image = random_images(1, size=(128, 128))[0]
        pixels = np.asarray(image).copy()
        pixels[0:16, 0:32] = 255 - pixels[0:16, 0:32]
        codes = []
        for picture in (image, Image.fromarray(pixels)):
            inputs = processor.image_processor(picture, return_tensors="pt")
            with torch.no_grad():
                codes.append(model.model.get_image_tokens(inputs["pixel_values"], inputs["image_sizes"])[0].numpy())
        moved = codes[0] != codes[1]
        sample = SimpleNamespace(inputs=inputs, n_image=moved.size)
        (panel,), _ = code_grid_layout(model.config, processor, sample, 128, 128)
        assert panel.shape == (32, 32)
        cells = panel.cell_boxes()
        inside = panel.tokens[(cells[..., 2] <= 32) & (cells[..., 3] <= 16)]
        far = panel.tokens[(cells[..., 0] >= 32 + 32) | (cells[..., 1] >= 16 + 32)]
        assert inside.size == 32 and far.size > 0
        assert moved[inside].any()
        assert not moved[far].any()
    finally:
        for norm in norms:
            del norm.forward
        with torch.no_grad():
            proj_out.weight.copy_(weight)
            proj_out.bias.copy_(bias)
        processor.image_processor.size = size
