"""hearlib.families.deepseek_vl: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "deepseek_vl": f"User: <image_placeholder>{PAPER_PROMPT}\n\nAssistant:",
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]
