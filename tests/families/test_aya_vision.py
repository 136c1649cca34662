"""hearlib.families.aya_vision: its tiny models' chat templates render the paper prompt as the hub's do."""
from __future__ import annotations

import pytest

from hearlib.prompts import PAPER_PROMPT

from .common import rendered

EXPECTED = {
    "aya_vision": (f"<|START_OF_TURN_TOKEN|><|USER_TOKEN|><image>{PAPER_PROMPT}<|END_OF_TURN_TOKEN|>"
                   "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"),
    "cohere2_vision": (f"<|START_OF_TURN_TOKEN|><|USER_TOKEN|><|IMG_PATCH|>{PAPER_PROMPT}<|END_OF_TURN_TOKEN|>"
                       "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"),
}


@pytest.mark.parametrize("model_type", EXPECTED)
def test_the_template_renders_the_hub_format(model_type, tiny_model_dir):
    assert rendered(tiny_model_dir(model_type)) == EXPECTED[model_type]


def test_the_engine_scales_aya_visions_logits_from_the_release_whose_wrapper_does(monkeypatch):
    """transformers 5.25 multiplies Aya Vision's logits by text_config.logit_scale; 5.24 and earlier do not."""
    from types import SimpleNamespace

    import transformers

    from hearlib.families.aya_vision import aya_vision_logit_scale
    from hearlib.families.registry import family_of

    model = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(logit_scale=0.0625)))
    monkeypatch.setattr(transformers, "__version__", "5.24.0")
    assert aya_vision_logit_scale(model) is None
    for release in ("5.25.0", "5.25.0.dev0", "5.26.1"):
        monkeypatch.setattr(transformers, "__version__", release)
        assert aya_vision_logit_scale(model) == 0.0625
    compass = SimpleNamespace(logit_scale=0.5, config=model.config)
    assert family_of("cohere_compass").logit_scale_of(compass) == 0.5 and family_of("cohere2_vision").logit_scale_of(model) is None
