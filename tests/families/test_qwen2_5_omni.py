"""hearlib.families.qwen2_5_omni: the thinkers' tiny templates render the paper prompt as the hubs' do, their
processors come from the folder (transformers maps none to the thinker types), and an image-only input
needs no audio."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "qwen2_5_omni_thinker": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                             f"<|vision_bos|><|IMAGE|><|vision_eos|>{PAPER_PROMPT}<|im_end|>\n"
                             "<|im_start|>assistant\n"),
    "qwen3_omni_moe_thinker": ("<|im_start|>user\n"
                               f"<|vision_start|><|image_pad|><|vision_end|>{PAPER_PROMPT}<|im_end|>\n"
                               "<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_an_image_only_input_has_no_audio_and_one_image_block(model_type, tiny_model_dir, random_images):
    from transformers import AutoConfig, AutoProcessor
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    from hearlib.families.registry import FAMILIES

    folder = tiny_model_dir(model_type)
    processor = AutoProcessor.from_pretrained(folder)
    assert model_type not in PROCESSOR_MAPPING_NAMES
    assert type(processor).__name__ == FAMILIES[model_type].processor_class
    config = AutoConfig.from_pretrained(folder)
    inputs = processor(images=random_images(1)[0], text=rendered(folder), return_tensors="pt")
    ids = inputs.input_ids[0].tolist()
    assert "input_features" not in inputs and config.audio_token_id not in ids
    first = ids.index(config.image_token_id)
    assert ids[first - 1] == config.vision_start_token_id
    assert ids[first:first + 16] == [config.image_token_id] * 16 and ids[first + 16] == config.vision_end_token_id
