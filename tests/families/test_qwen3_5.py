"""hearlib.families.qwen3_5: its tiny models' chat templates render the paper prompt as the hub's do, and
HeAr covers their softmax-attention layers only (tests/method/test_hybrid.py checks the method on it)."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "qwen3_5": ("<|im_start|>user\n"
                f"<|vision_start|><|image_pad|><|vision_end|>{PAPER_PROMPT}<|im_end|>\n"
                "<|im_start|>assistant\n<think>\n"),
    "qwen3_5_moe": ("<|im_start|>user\n"
                    f"<|vision_start|><|image_pad|><|vision_end|>{PAPER_PROMPT}<|im_end|>\n"
                    "<|im_start|>assistant\n<think>\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_covered_layers_are_the_full_attention_layers(model_type, tiny_model_dir):
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type))
    layer_types = engine.family.text_config_of(engine.model.config).layer_types
    assert engine.covered_layers == [i for i, kind in enumerate(layer_types) if kind == "full_attention"] == [1, 3]
    assert engine.n_total_heads == 2 * engine.n_heads


def test_the_tokenizer_survives_transformers_rebuilding_it(tiny_model_dir):
    """transformers loads Qwen3_5Tokenizer (a BPE rebuilt from the saved vocabulary) whatever class is saved:
    the tiny tokenizer's words are added single-word tokens, so the words keep their ids."""
    from transformers import AutoProcessor

    from hearlib.families.tiny import tiny_processor

    loaded = AutoProcessor.from_pretrained(tiny_model_dir("qwen3_5")).tokenizer
    built = tiny_processor("qwen3_5").tokenizer
    text = rendered(tiny_model_dir("qwen3_5")) + "dog"
    assert type(loaded).__name__ == "Qwen3_5Tokenizer"
    assert loaded(text, add_special_tokens=False)["input_ids"] == built(text, add_special_tokens=False)["input_ids"]
