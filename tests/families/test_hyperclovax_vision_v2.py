"""hearlib.families.hyperclovax_vision_v2: its tiny model's template renders the paper prompt in the format
the record assumes, and the engine scales the logits as the wrapper does."""
from __future__ import annotations

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "hyperclovax_vision_v2": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                              f"<|vision_start|><|image_pad|><|vision_end|>{PAPER_PROMPT}<|im_end|>\n"
                              "<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_logits_are_the_unembedded_state_times_logits_scaling(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    from hearlib.families.hyperclovax_vision_v2 import hyperclovax_logit_scale

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir("hyperclovax_vision_v2")).eval()
    assert hyperclovax_logit_scale(model) == 0.5
    input_ids = torch.tensor([[2, 20, 30, 40]])
    with torch.no_grad():
        hidden = model.model(input_ids=input_ids).last_hidden_state
        logits = model(input_ids=input_ids).logits
    torch.testing.assert_close(logits, model.lm_head(hidden) * 0.5)
