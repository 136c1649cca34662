"""hearlib.families.internvl: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "internvl": ("<|im_start|>system\nYou are InternVL, a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                 f"<IMG_CONTEXT>\n{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n"),
    "qianfan_ocr": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                    f"{PAPER_PROMPT}<|im_end|>\n<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]
