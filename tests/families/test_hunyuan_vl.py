"""hearlib.families.hunyuan_vl: the tiny template renders the paper prompt as the stand-in template says (no hub
files offline: vLLM's HunyuanOCR prompt, not checked against the hub's chat template), and the layout's
non-spatial tokens are where the model puts its learned image_begin, image_newline and image_end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.tokenprobes import decoder_input_tokens
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "hunyuan_vl": ("<｜hy_begin▁of▁sentence｜><｜hy_place▁holder▁no▁100｜><｜hy_place▁holder▁no▁102｜>"
                   f"<｜hy_place▁holder▁no▁101｜>{PAPER_PROMPT}<｜hy_User｜>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_stand_in_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_begin_newlines_and_end_are_the_mergers_learned_embeddings(tiny_model_dir):
    """At the layout's non-spatial tokens the decoder receives after_rms(image_begin), after_rms(mlp(image_newline))
    and after_rms(image_end); the 4 × 4 grid tokens are none of them."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("hunyuan_vl"))
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    layout = image_token_layout(engine, sample)
    assert sample.n_image == 4 * 5 + 2
    assert layout.non_spatial == {"image begin": (0,), "newline": (5, 10, 15, 20), "image end": (21,)}
    features = torch.from_numpy(decoder_input_tokens(engine, sample))
    merger = engine.model.model.vision_tower.patch_merger
    with torch.no_grad():
        begin, end = merger.after_rms(merger.image_begin[None]), merger.after_rms(merger.image_end[None])
        newline = merger.after_rms(merger.mlp(merger.image_newline[None]))
    torch.testing.assert_close(features[0], begin[0])
    torch.testing.assert_close(features[21], end[0])
    for row in (5, 10, 15, 20):
        torch.testing.assert_close(features[row], newline[0])
    grid = layout.panels[0].tokens.ravel()
    np.testing.assert_array_equal(grid, [1 + r * 5 + c for r in range(4) for c in range(4)])
    for learned in (begin, end, newline):
        assert (features[grid] - learned).abs().amax(-1).min() > 1e-4


def test_the_means_run_one_image_per_forward_because_a_batch_rotates_row_b_as_image_b(tiny_model_dir, random_images):
    """Batched, the second row's image keys differ from that image's own forward (get_rope_index counts
    image_index across the batch); one image per forward (the record's flag) gives each image's own keys."""
    import dataclasses

    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("hunyuan_vl"), check=False)
    assert engine.family.means_one_image_per_forward
    images = random_images(2, seed=4)
    own = [engine.image_keys_values(engine.prepare(image)) for image in images]
    keys, values, _ = engine.image_keys_values_many(images)
    for row, (own_keys, own_values) in enumerate(own):
        torch.testing.assert_close(keys[row], own_keys, rtol=0, atol=1e-5)
        torch.testing.assert_close(values[row], own_values, rtol=0, atol=1e-5)
    engine.family = dataclasses.replace(engine.family, means_one_image_per_forward=False)
    batched_keys, _, _ = engine.image_keys_values_many(images)
    torch.testing.assert_close(batched_keys[0], own[0][0], rtol=0, atol=1e-5)
    assert (batched_keys[1] - own[1][0]).abs().max() > 1e-4      # ten times the tolerance of the means
