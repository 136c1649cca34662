"""hearlib.families.blip_2: BLIP-2's and InstructBLIP's processors keep no chat template, so the prompt is the
record's (the model cards' ``Question: {p} Answer:``); the image tokens are the Q-Former's queries, before the
text and non-spatial; a processor without a template of a family without one is refused in one line."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "blip-2": f"Question: {PAPER_PROMPT} Answer:",
    "instructblip": f"Question: {PAPER_PROMPT} Answer:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_model_cards_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_processor_drops_its_template_and_the_engine_gives_the_familys(model_type, tiny_model_dir):
    from transformers import AutoProcessor

    from hearlib.families.registry import FAMILIES
    from hearlib.method.loading import load_engine

    folder = tiny_model_dir(model_type)
    assert AutoProcessor.from_pretrained(folder).chat_template is None
    engine = load_engine(folder, check=False)
    assert engine.processor.chat_template == FAMILIES[model_type].chat_template
    assert engine.chat_text(None) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_image_tokens_are_the_query_tokens_before_the_text(model_type, tiny_model_dir):
    """num_query_tokens <image> tokens first (before BOS), then the tokenized prompt; all non-spatial."""
    from PIL import Image

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir(model_type), check=False)
    sample = engine.prepare(Image.new("RGB", (64, 64), "white"), answer="dog")
    queries = engine.model.config.num_query_tokens
    ids = sample.inputs["input_ids"][0].tolist()
    prompt = engine.tokenizer(EXPECTED[model_type])["input_ids"]
    assert ids == [engine.image_token_id] * queries + prompt
    assert sample.image_positions.tolist() == list(range(queries))
    layout = image_token_layout(engine, sample)
    assert layout.panels == () and layout.non_spatial == {"query": tuple(range(queries))}
    np.testing.assert_array_equal(layout.non_spatial_indices, np.arange(sample.n_image))


def test_a_processor_without_a_template_of_a_family_without_one_is_refused_in_one_line(tiny_model_dir,
                                                                                        monkeypatch):
    from hearlib.errors import UserError
    from hearlib.families import registry
    from hearlib.method.loading import load_engine

    monkeypatch.setitem(registry.FAMILIES, "blip-2", dataclasses.replace(registry.FAMILIES["blip-2"],
                                                                         chat_template=None))
    engine = load_engine(tiny_model_dir("blip-2"), check=False)
    assert engine.processor.chat_template is None
    with pytest.raises(UserError) as refused:
        engine.chat_text(None)
    message = str(refused.value)
    assert "\n" not in message and "Blip2Processor" in message and "no chat template" in message
