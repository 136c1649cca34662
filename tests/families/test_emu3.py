"""hearlib.families.emu3: the tiny template renders the paper prompt in Emu3's own format (a stand-in, not checked
against hub files, none here); the image tokens are the <image> placeholders, in each row the text-table
embeddings of the row's VQ codes and then the end-of-line embedding, which the layout names non-spatial; and, with
the VQ encoder made local, inverting a corner of the image changes the codes of the cells the layout puts there
and no code far from it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hearlib.method.tokenprobes import decoder_inputs
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "emu3": f"You are a helpful assistant. USER: <image>{PAPER_PROMPT} ASSISTANT:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_stand_in_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from hearlib.method.loading import load_engine

    side = 64                                             # the tiny image processor's size: no resampling
    return load_engine(tiny_model_dir("emu3"), resolution=(side, side))


def _codes(model, inputs) -> np.ndarray:
    """The VQ encoder's code grid (rows × cols) of the one image in ``inputs``."""
    with torch.no_grad():
        output = model.model.vqmodel.encode(inputs["pixel_values"], inputs["image_sizes"], return_dict=True)
    return output.image_tokens[0].numpy()


def test_image_tokens_are_the_code_embeddings_then_a_row_end_per_row(engine, random_images):
    """8 × 8 codes: between '<|image token|>' and '<|extra_201|>' every position is <image>; the layout's grid
    cells hold, row by row, the text embedding of '<|visual token N|>' for their code N, and the position after
    each row (a non-spatial row end) the embedding of '<|extra_200|>'."""
    from hearlib.families.geometry import image_token_layout

    sample = engine.prepare(random_images(1)[0], answer="dog")
    layout = image_token_layout(engine, sample)
    (panel,) = layout.panels
    assert panel.shape == (8, 8) and layout.n_tokens == 8 * 9
    assert layout.non_spatial == {"row ends": tuple(range(8, 72, 9))}
    tokenizer = engine.processor.tokenizer
    ids = sample.inputs["input_ids"][0]
    first, last = int(sample.image_positions[0]), int(sample.image_positions[-1])
    assert (sample.image_positions == torch.arange(first, last + 1)).all()
    assert tokenizer.convert_ids_to_tokens([int(ids[first - 1]), int(ids[last + 1])]) == [
        "<|image token|>", "<|extra_201|>"]
    embeds = decoder_inputs(engine, sample)["inputs_embeds"][0, sample.image_positions].detach()
    table = engine.model.get_input_embeddings().weight.detach()
    codes = _codes(engine.model, sample.inputs)
    assert codes.shape == (8, 8) and len(np.unique(codes)) > 1
    code_ids = torch.tensor([tokenizer.convert_tokens_to_ids(f"<|visual token {c:06d}|>") for c in codes.ravel()])
    assert torch.equal(embeds[torch.as_tensor(panel.tokens.ravel())], table[code_ids])
    row_ends = torch.as_tensor(layout.non_spatial["row ends"])
    assert torch.equal(embeds[row_ends], table[[tokenizer.convert_tokens_to_ids("<|extra_200|>")] * 8])


def test_a_changed_corner_changes_the_codes_the_layout_puts_there(engine, random_images):
    """The VQ encoder made local (GroupNorms as identities: they normalise over the whole image; the mid-block
    attention's out_proj zeroed; BatchNorm3d in eval mode is per channel), on a 256 px image (32 × 32 codes):
    inverting the top-left 64 × 32 px changes some code among the cells there and none of the cells starting
    104 px or more past it (a code reads pixels from 103 px before its cell: the 3 × 3 convolutions' reach, 1 + 2
    px at full scale, 4 at 1/2, 8 at 1/4 and 11 convolutions × 8 px at 1/8 scale)."""
    from PIL import Image
    from transformers import Emu3ImageProcessor

    from hearlib.families.emu3 import code_rows_layout

    model = engine.model
    vq = model.model.vqmodel
    norms = [m for m in vq.encoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    out_proj = vq.encoder.middle_block.attn_1.out_proj
    weight, bias = out_proj.weight.detach().clone(), out_proj.bias.detach().clone()
    image_processor = Emu3ImageProcessor(min_pixels=256 * 256, max_pixels=256 * 256, spatial_factor=8)
    try:
        for norm in norms:
            norm.forward = lambda x, *quant_states: x
        with torch.no_grad():
            out_proj.weight.zero_()
            out_proj.bias.zero_()
        image = random_images(1, size=(256, 256))[0]
        pixels = np.asarray(image).copy()
        pixels[0:32, 0:64] = 255 - pixels[0:32, 0:64]
        codes = []
        for picture in (image, Image.fromarray(pixels)):
            inputs = image_processor(picture, return_tensors="pt")
            codes.append(_codes(model, inputs).ravel())
        moved = codes[0] != codes[1]
        sample = SimpleNamespace(inputs=inputs, n_image=32 * 33)
        (panel,), non_spatial = code_rows_layout(model.config, engine.processor, sample, 256, 256)
        assert panel.shape == (32, 32) and len(non_spatial["row ends"]) == 32
        cell_of_token = np.full(32 * 33, -1)
        cell_of_token[panel.tokens.ravel()] = np.arange(32 * 32)     # token index -> its code's index in the grid
        cells = panel.cell_boxes()
        inside = cell_of_token[panel.tokens[(cells[..., 2] <= 64) & (cells[..., 3] <= 32)]]
        far = cell_of_token[panel.tokens[(cells[..., 0] >= 64 + 104) | (cells[..., 1] >= 32 + 104)]]
        assert inside.size == 32 and far.size > 0
        assert moved[inside].any()
        assert not moved[far].any()
    finally:
        for norm in norms:
            del norm.forward
        with torch.no_grad():
            out_proj.weight.copy_(weight)
            out_proj.bias.copy_(bias)
