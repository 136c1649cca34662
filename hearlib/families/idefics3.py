"""The Idefics3 lineage: Idefics3 and SmolVLM (Idefics3's wrapper and layout with its own classes).

Layout: ``(image_size/patch/scale_factor)²`` tokens per view (pixel shuffle). With image splitting the
image is cut into rows × cols tiles (the ``<row_r_col_c>`` tokens tell how many) read row-major, then
the global image; the row/col, ``<global-img>`` and ``<fake_token_around_image>`` tokens are not image
tokens. The decoder is under ``model.text_model``.

Tiny models: a SigLIP-like tower 64 px / patch 8 (8 × 8 patches), pixel shuffle 2 → 16 ``<image>``
tokens between ``<fake_token_around_image><global-img>`` and ``<fake_token_around_image>``; a Llama
decoder; image splitting off (one global image, longest edge 64). Template
``<|im_start|>User:<image>{p}<end_of_utterance>\\nAssistant:``. SmolVLMProcessor also takes a video
processor and needs the num2words package.
"""
from __future__ import annotations

import re

from hearlib.families.geometry import Panel, pair, regular_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["idefics3_layout", "tiles_then_whole"]


def tiles_then_whole(rows: int, cols: int, vision, scale: int, width, height, whole: str) -> list[Panel]:
    """rows × cols tiles read row-major, each a grid over its part of the image, then one more grid, ``whole``
    (the global image, a thumbnail), over the whole image; with no tiles (0 × 0) that grid alone. A grid's
    side: the ``vision`` tower's patches a side, pixel-shuffled by ``scale``."""
    side = pair(vision.image_size)[0] // pair(vision.patch_size)[0] // scale
    per_tile = side * side
    panels = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        box = (c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
        panels.append(Panel(f"tile {r},{c}", regular_grid(i * per_tile, side, side, side), box))
    panels.append(Panel(whole, regular_grid(rows * cols * per_tile, side, side, side),
                        (0.0, 0.0, float(width), float(height))))
    return panels


def idefics3_layout(config, processor, sample, width, height):
    """The tiles the ``<row_r_col_c>`` tokens count, then the global image; or the global image alone."""
    tags = [processor.tokenizer.convert_ids_to_tokens(int(i)) for i in sample.inputs["input_ids"][0]]
    cells = [tuple(int(v) for v in m.groups()) for t in tags if (m := re.fullmatch(r"<row_(\d+)_col_(\d+)>", t))]
    rows, cols = (max(r for r, _ in cells), max(c for _, c in cells)) if cells else (0, 0)
    return tiles_then_whole(rows, cols, config.vision_config, int(config.scale_factor), width, height, "global"), {}


IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
_TOKENS = Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                  "<image>", "<global-img>") + tuple(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)),
                 dict(bos_token="<|im_start|>", eos_token="<end_of_utterance>", unk_token="<unk>",
                      pad_token="<|endoftext|>"),
                 {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                  "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
_PIXELS = dict(do_resize=True, size={"longest_edge": 64}, max_image_size={"longest_edge": 64}, image_mean=[0.5] * 3,
               image_std=[0.5] * 3, resample=3)


def _idefics_spec(image_processor: tuple, video_processor: tuple | None = None) -> TinySpec:
    return TinySpec(tokens=_TOKENS, template=IDEFICS3_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                    token_ids={"image_token_id": "<image>"}, config={"scale_factor": 2},
                    image_processor=image_processor, video_processor=video_processor,
                    processor={"image_seq_len": 16})


_TEXT_MODEL = dict(TRANSFORMERS_DECODER, decoder="model.text_model")
register(
    Family("Idefics3", "idefics3", "Idefics3ForConditionalGeneration", "Idefics3Processor",
           resolution=(364, 364), layout=idefics3_layout,
           tiny=_idefics_spec(("Idefics3ImageProcessor", dict(do_image_splitting=False, **_PIXELS))),
           note="SigLIP 364 px / patch 14 pixel-shuffled 2 × 2 (169 tokens a view); split into tiles + a global image "
                "(row/col and <global-img> tokens are not image tokens); decoder under model.text_model",
           **_TEXT_MODEL),
    Family("SmolVLM", "smolvlm", "SmolVLMForConditionalGeneration", "SmolVLMProcessor",
           resolution=(512, 512), layout=idefics3_layout,
           tiny=_idefics_spec(("SmolVLMImageProcessor", dict(do_image_splitting=False, **_PIXELS)),
                              ("SmolVLMVideoProcessor", _PIXELS)),
           note="Idefics3's wrapper and layout (SigLIP tiles pixel-shuffled by scale_factor + a global image; "
                "row/col and <global-img> tokens are not image tokens; decoder under model.text_model); "
                "SmolVLMProcessor needs num2words; runs at 512 × 512",
           **_TEXT_MODEL),
)
