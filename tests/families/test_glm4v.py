"""hearlib.families.glm4v: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "glm4v": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glm4v_moe": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glm46v": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glmga": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glm_ocr": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


@pytest.mark.parametrize("model_type", ["glmga", "glm_ocr"])
def test_the_types_transformers_maps_no_processor_to_load_glm46vs_from_the_folder(model_type, tiny_model_dir):
    from transformers import AutoProcessor
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    assert model_type not in PROCESSOR_MAPPING_NAMES
    assert type(AutoProcessor.from_pretrained(tiny_model_dir(model_type))).__name__ == "Glm46VProcessor"


def test_glmga_runs_glm46vs_model_on_its_own_config(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = tiny_model_dir("glmga")
    config = AutoConfig.from_pretrained(folder)
    assert type(config).__name__ == "GlmgaConfig"
    assert type(AutoModelForImageTextToText.from_config(config)).__name__ == "Glm46VForConditionalGeneration"
