"""hearlib.families.glm5_next: its tiny model's chat template renders the paper prompt as GLM-4.6V's does (no GLM-5-Next
hub template is stored here), HeAr covers its indexed-attention layers only, and under hearlib's attention the DSA
selection still reaches the attention function as a mask that narrows a query's keys below the causal ones."""
from __future__ import annotations

import pytest
import torch

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "glm5_next": ("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>"
                  f"{PAPER_PROMPT}<|assistant|>\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_glm_4_6vs_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from hearlib.method.loading import load_engine

    return load_engine(tiny_model_dir("glm5_next"))


def test_the_covered_layers_are_the_indexed_attention_layers(engine):
    layer_types = engine.family.text_config_of(engine.model.config).layer_types
    assert engine.covered_layers == [i for i, kind in enumerate(layer_types) if kind != "linear_attention"] == [1, 3]
    assert engine.n_total_heads == 2 * engine.n_heads


def test_the_sparse_selection_reaches_hearlibs_attention_as_a_narrowing_mask(engine, random_images, monkeypatch):
    from transformers.models.glm5_next import modeling_glm5_next

    received = []
    attend = modeling_glm5_next.ALL_ATTENTION_FUNCTIONS["hear"]

    def recording(module, query, key, value, attention_mask, **kwargs):
        received.append(attention_mask)
        return attend(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(modeling_glm5_next.ALL_ATTENTION_FUNCTIONS, "hear", recording)
    sample = engine.prepare(random_images(1)[0], answer="dog")
    with torch.no_grad():
        engine.model(**sample.inputs, use_cache=False)
    assert len(received) == 2
    for mask in received:
        visible = (mask[0, 0] == 0) if mask.dtype != torch.bool else mask[0, 0]
        causal = torch.ones_like(visible).tril()
        assert not (visible & ~causal).any()                    # never a future key
        last = int(sample.inputs["attention_mask"][0].sum()) - 1
        assert 0 < int(visible[last].sum()) < last + 1           # the last query sees fewer keys than causal
