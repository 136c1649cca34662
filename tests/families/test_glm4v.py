"""hearlib.families.glm4v: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "glm4v": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glm4v_moe": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
    "glm46v": (f"[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{PAPER_PROMPT}<|assistant|>\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]
