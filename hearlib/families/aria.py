"""Aria (``aria``).

Layout: an Idefics3-style vision tower over the image padded to a square of ``max_image_size`` (980 px /
patch 14: 70 × 70 patches), then AriaProjector: ``projector_patch_to_query_dict[patches]`` learned queries
(256 at 980 px, 128 at 490 px) cross-attend to all the patches (AriaCrossAttention) and become the
``<|img|>`` tokens; with ``split_image`` one such block per crop. The queries are ordinary decoder
positions (a mixture-of-experts decoder whose token mixing is self-attention), but none covers a part of
the image: the layout names each crop's queries as non-spatial (no panels), so attribution works and image
maps have no geometry to draw on.

Tiny model: the tower at the real 980 px with patch 70 (14 × 14 = 196 patches → 16 queries;
``size_conversion`` {980: 16}: AriaProcessor always passes its own ``max_image_size`` 980), the Aria MoE
decoder with 4 experts (top 2, one shared); the Aria image processor, no split. Template (the hub's, rhymes-ai/Aria) ChatML with the image as ``<fim_prefix><|img|><fim_suffix>``.
"""
from __future__ import annotations

from hearlib.families.internvl import CHATML_ROLES
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["aria_layout"]


def aria_layout(config, processor, sample, width, height):
    """Each crop's learned queries as a non-spatial group: they lie nowhere on the image."""
    n_crops = int(sample.inputs["pixel_values"].shape[0])
    per_crop = sample.n_image // n_crops
    names = ["image"] if n_crops == 1 else [f"crop {i}" for i in range(n_crops)]
    return [], {f"{name} queries": tuple(range(i * per_crop, (i + 1) * per_crop)) for i, name in enumerate(names)}


ARIA_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% elif item['type'] == 'image' %}<fim_prefix><|img|><fim_suffix>{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

register(
    Family("Aria", "aria", "AriaForConditionalGeneration", "AriaProcessor",
           resolution=(980, 980), layout=aria_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<fim_prefix>", "<|img|>",
                              "<fim_suffix>"), CHATML_ROLES, {"image_token": "<|img|>"}),
               template=ARIA_TEMPLATE, image_tokens=16, processed_size=(980, 980),
               token_ids={"image_token_index": "<|img|>"},
               text=dict(moe_num_experts=4, moe_topk=2, moe_num_shared_experts=1),
               vision=dict(image_size=980, patch_size=70), config={"projector_patch_to_query_dict": {196: 16}},
               image_processor=("AriaImageProcessor", dict(max_image_size=980, split_image=False)),
               processor={"size_conversion": {980: 16}}),
           note="learned queries (256 at 980 px) cross-attend to the patches in the projector (AriaCrossAttention) "
                "and enter the MoE decoder as <|img|> tokens: no grid on the image, so the layout names them "
                "non-spatial (attribution works, image maps have no geometry); runs at 980 × 980",
           **TRANSFORMERS_DECODER),
)
