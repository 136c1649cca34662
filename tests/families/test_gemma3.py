"""hearlib.families.gemma3: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "gemma3": (f"<bos><start_of_turn>user\n<start_of_image>{PAPER_PROMPT}<end_of_turn>\n<start_of_turn>model\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]
