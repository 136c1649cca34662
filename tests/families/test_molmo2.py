"""hearlib.families.molmo2: the tiny template renders the paper prompt as the hub's Molmo2 template does (a stand-in
written from a public copy of allenai/Molmo2-4B's chat_template.jinja, not checked against the hub here), every
image token's cell holds the patches the processor pools into it (image_token_pooling), and the image block's
trailing <im_col><im_end> send the engine to the literal path."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "molmo2": f"<|image|><|im_start|>user\n{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.fixture(scope="module")
def engine_and_sample(tiny_model_dir):
    from PIL import Image

    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("molmo2"))
    rng = np.random.default_rng(0)
    sample = engine.prepare(Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")), answer="dog")
    return engine, sample


def _patch_centres(image_processor, pooled: np.ndarray, width: int, height: int) -> np.ndarray:
    """[tokens, 2] mean (x, y) in image pixels of the patches each token pools, read from the processor's indices:
    crop 0 is the low-resolution view, the others the overlapping crops of the high-resolution canvas."""
    from transformers.models.molmo2.image_processing_molmo2 import compute_crop_geometry

    crop, patch = image_processor.size["height"], image_processor.patch_size
    per_side = crop // patch
    margin = image_processor.overlap_margins[0]
    window = (per_side - 2 * margin) * patch
    tiling_h, tiling_w, canvas_h, canvas_w = compute_crop_geometry(
        height, width, image_processor.max_crops, image_processor.overlap_margins, crop, patch)
    centres = np.zeros((len(pooled), 2))
    for token, indices in enumerate(pooled):
        points = []
        for index in indices[indices >= 0]:
            view, local = divmod(int(index), per_side * per_side)
            r, c = divmod(local, per_side)
            if view == 0:
                points.append(((c + 0.5) * patch * width / crop, (r + 0.5) * patch * height / crop))
            else:
                i, j = divmod(view - 1, tiling_w)
                points.append(((j * window + (c + 0.5) * patch) * width / canvas_w,
                               (i * window + (r + 0.5) * patch) * height / canvas_h))
        centres[token] = np.mean(points, axis=0)
    return centres


def test_every_token_cell_holds_the_patches_it_pools(engine_and_sample):
    from hearlib.families.geometry import image_token_layout

    engine, sample = engine_and_sample
    layout = image_token_layout(engine, sample)
    assert [(p.name, p.shape) for p in layout.panels] == [("low-res", (4, 4)), ("high-res", (6, 6))]
    assert layout.non_spatial == {}
    width, height = layout.image_size
    pooled = np.asarray(sample.inputs["image_token_pooling"])
    centres = _patch_centres(engine.processor.image_processor, pooled, width, height)
    for panel in layout.panels:
        cells = panel.cell_boxes()
        for (r, c), token in np.ndenumerate(panel.tokens):
            x0, y0, x1, y1 = cells[r, c]
            x, y = centres[token]
            assert x0 < x < x1 and y0 < y < y1, (panel.name, r, c, centres[token], cells[r, c])


def test_the_image_block_runs_past_the_last_image_token(engine_and_sample):
    """<im_col><im_end> after the last <im_patch> share the image tokens' bidirectional block: the fast path's
    premise (no image position reads a text position) fails, and the engine says so."""
    engine, sample = engine_and_sample
    types = np.asarray(sample.inputs["mm_token_type_ids"][0])
    tokens = engine.tokenizer.convert_ids_to_tokens(sample.inputs["input_ids"][0, sample.text_start:][:2])
    assert tokens == ["<im_col>", "<im_end>"] and types[sample.text_start:sample.text_start + 2].tolist() == [1, 1]
    assert engine.fast_path_problem(sample) is not None
