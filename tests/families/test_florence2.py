"""hearlib.families.florence2: the prompt is the text as given and the processor lays out the encoder's input
(``<image>`` × 65, ``<s>``, the prompt's words, ``</s>``); the image tokens are the mean of the tower's last-stage
grid, then that grid row-major, as the multimodal projector writes them."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import torch

from hearlib.families.florence2 import florence2_layout
from hearlib.prompts import PAPER_PROMPT

from .common import rendered

GRID = 8                       # the tiny tower's last stage: 64 px / strides 4 · 2
EXPECTED = {"florence2": PAPER_PROMPT}      # the text only: the processor adds <image>s, <s> and </s> itself


def test_the_template_renders_the_prompt_text_only(tiny_model_dir):
    assert rendered(tiny_model_dir("florence2")) == EXPECTED["florence2"]


def test_the_processor_puts_the_image_first_then_the_prompt_between_s_and_end_tokens(tiny_model_dir, random_images):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir("florence2"))
    tokenizer = processor.tokenizer
    ids = processor(images=random_images(1)[0], text=PAPER_PROMPT, return_tensors="pt")["input_ids"][0].tolist()
    words = re.findall(r"\w+|[^\w\s]+", PAPER_PROMPT)          # the tiny word-level tokenizer's split
    expected = (["<image>"] * (GRID * GRID + 1) + ["<s>"] + words + ["</s>"])
    assert ids == tokenizer.convert_tokens_to_ids(expected)
    assert tokenizer.unk_token_id not in ids


def test_the_first_image_token_is_the_mean_and_each_grid_token_carries_its_own_cell(tiny_model_dir, random_images):
    """Changing one cell of the tower's output feature map changes exactly its grid token and the mean token."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dir("florence2")
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    pixels = AutoProcessor.from_pretrained(folder).image_processor(random_images(1)[0], return_tensors="pt")
    with torch.no_grad():
        features = model.model.vision_tower(pixels["pixel_values"]).last_hidden_state
        assert features.shape[-2:] == (GRID, GRID)
        tokens = model.model.multi_modal_projector(features)[0]
        assert tokens.shape[0] == GRID * GRID + 1
        panels, non_spatial = florence2_layout(model.config, None, SimpleNamespace(n_image=tokens.shape[0]), 64, 64)
        for row, col in ((0, 0), (0, 5), (3, 2), (7, 7)):
            changed = features.clone()
            changed[0, :, row, col] += 1.0
            moved = (model.model.multi_modal_projector(changed)[0] - tokens).abs().amax(-1) > 1e-6
            assert moved.nonzero().flatten().tolist() == [*non_spatial["mean"], int(panels[0].tokens[row, col])]
        assert non_spatial["mean"] == (0,) and panels[0].tokens[0, 0] == 1 and panels[0].tokens[7, 7] == GRID * GRID


def test_the_layout_names_every_image_token_once_at_the_real_size():
    panels, non_spatial = florence2_layout(None, None, SimpleNamespace(n_image=24 * 24 + 1), 768, 768)
    assert panels[0].shape == (24, 24) and panels[0].box == (0, 0, 768, 768)
    assert np.array_equal(np.sort(np.concatenate([panels[0].tokens.ravel(), non_spatial["mean"]])), np.arange(577))
