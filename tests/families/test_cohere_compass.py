"""hearlib.families.cohere_compass: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "cohere_compass": ("<|START_OF_TURN_TOKEN|><|USER_TOKEN|><|VISION_START|><|IMAGE_PAD|><|VISION_END|>"
                       f"{PAPER_PROMPT}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]
