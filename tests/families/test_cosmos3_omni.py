"""hearlib.families.cosmos3_omni: its tiny model's template renders the paper prompt as the hub's does, and the
type runs Qwen3-VL's model and processor."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "cosmos3_omni": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                     f"<|vision_start|><|image_pad|><|vision_end|>{PAPER_PROMPT}<|im_end|>\n"
                     "<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_model_is_qwen3_vls_and_loads_qwen3_vls_processor(tiny_model_dir, random_images):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    folder = tiny_model_dir("cosmos3_omni")
    assert "cosmos3_omni" not in PROCESSOR_MAPPING_NAMES
    processor = AutoProcessor.from_pretrained(folder)
    assert type(processor).__name__ == "Qwen3VLProcessor"
    cosmos = AutoModelForImageTextToText.from_pretrained(folder).eval()
    settings = {k: v for k, v in cosmos.config.to_dict().items() if k not in ("model_type", "architectures")}
    qwen3_vl = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**settings)).eval()
    qwen3_vl.load_state_dict(cosmos.state_dict(), strict=True)
    inputs = processor(images=random_images(1)[0], text=rendered(folder), return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(cosmos(**inputs).logits, qwen3_vl(**inputs).logits)
