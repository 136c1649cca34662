"""hearlib.families.janus: its tiny model's chat template renders the paper prompt as the hub's does; the
processor adds the default system prompt; the image-generation VQ-VAE is off the text answer's path."""
from __future__ import annotations

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "janus": f"<|User|>: <image_placeholder>\n{PAPER_PROMPT}\n\n<|Assistant|>:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_processor_puts_the_default_system_prompt_first(tiny_model_dir, random_images):
    from transformers import AutoProcessor
    from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT

    processor = AutoProcessor.from_pretrained(tiny_model_dir("janus"))
    ids = processor(text=[EXPECTED["janus"]], images=random_images(1), return_tensors="pt").input_ids[0].tolist()
    system = processor.tokenizer(DEFAULT_SYSTEM_PROMPT, add_special_tokens=False).input_ids
    assert ids[1:1 + len(system)] == system


def test_the_vq_vae_does_not_reach_the_answer(tiny_model_dir, random_images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dir("janus")
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor(text=[EXPECTED["janus"]], images=random_images(1), return_tensors="pt")
    with torch.no_grad():
        before = model(**inputs).logits
        for module in (model.model.vqmodel, model.model.generation_aligner, model.model.generation_head,
                       model.model.generation_embeddings):
            for parameter in module.parameters():
                parameter.add_(1.0)
        after = model(**inputs).logits
    assert torch.equal(before, after)
