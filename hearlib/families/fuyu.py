"""Fuyu (``fuyu``).

Layout: no vision tower. FuyuImageProcessor shrinks an image to fit ``size`` (1080 × 1920; it never upscales)
and pads it at the bottom and right; FuyuProcessor cuts the unpadded part (rounded up to whole patches) into
30 px patches, row by row, and writes one ``|SPEAKER|`` per patch with ``|NEWLINE|`` after each row, then
``<s>``, the prompt and ``<0x04>``; FuyuModel embeds each patch linearly (``vision_embed_tokens``) over its
``|SPEAKER|``. The Persimmon decoder reads them by softmax self-attention. The layout puts the ``|SPEAKER|``
tokens on one row-major grid; the ``|NEWLINE|`` tokens between the rows are text tokens the processor writes.
The family runs at 1080 × 1080 (36 × 36 = 1296 patches, no resize, no padded patch).

Prompt: FuyuProcessor.__init__ drops ``chat_template`` and the processor places the image itself, so the
record's ``chat_template`` renders the prompt text alone, as the model card passes it (``text=prompt``).

Tiny model: a 48 × 48 ``size`` and 8 px patches (any square input → 48 × 48 → 6 × 6 = 36 ``|SPEAKER|``), the
Persimmon decoder (multi-head: PersimmonConfig has no key/value heads). FuyuProcessor drops the first token
of the tokenized placeholders (the ``▁`` the hub's SentencePiece tokenizer puts first), so the tiny
tokenizer starts every stretch of text with ``▁`` and keeps ``|SPEAKER|`` and ``|NEWLINE|`` as ordinary
words (``Tokens.lead`` / ``Tokens.plain``).
"""
from __future__ import annotations

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid, size_value
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["fuyu_layout", "TEXT_ONLY_TEMPLATE"]


def fuyu_layout(config, processor, sample, width, height):
    """One row-major grid of patches over the image; a resized side that is not a whole number of patches
    (its last patch partly padding) is refused."""
    image_processor = processor.image_processor
    size, patch = image_processor.size, image_processor.patch_size
    patch_h, patch_w = int(size_value(patch, "height")), int(size_value(patch, "width"))
    scale = min(1.0, size_value(size, "height") / height, size_value(size, "width") / width)
    resized_h, resized_w = (height, width) if scale == 1.0 else (int(height * scale), int(width * scale))
    if resized_h % patch_h or resized_w % patch_w:
        raise UnsupportedModel(f"Fuyu: the {resized_w} × {resized_h} resized image is not a whole number of "
                               f"{patch_w} × {patch_h} patches; run at a resolution that is")
    rows, cols = resized_h // patch_h, resized_w // patch_w
    newlines = int((sample.inputs["input_ids"][0] == processor.image_newline_id).sum())
    if rows * cols != sample.n_image or newlines != rows:
        raise UnsupportedModel(f"Fuyu: expected {rows} rows of {cols} patches, the processor wrote "
                               f"{sample.n_image} |SPEAKER| in {newlines} rows")
    return single_grid(rows, cols, width, height), {}


TEXT_ONLY_TEMPLATE = (
    "{% for message in messages %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endfor %}"
)
_PIXELS = dict(size={"height": 48, "width": 48}, patch_size={"height": 8, "width": 8})

register(
    Family("Fuyu", "fuyu", "FuyuForCausalLM", "FuyuProcessor", resolution=(1080, 1080), layout=fuyu_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<unk>", "<s>", "|ENDOFTEXT|", "▁", "|SPEAKER|", "|NEWLINE|", "<0x04>"),
                             dict(bos_token="<s>", eos_token="|ENDOFTEXT|", unk_token="<unk>", pad_token="<pad>"),
                             {}, lead="▁", plain=("▁", "|SPEAKER|", "|NEWLINE|")),
               template=TEXT_ONLY_TEMPLATE, image_tokens=36, processed_size=(48, 48),
               token_ids={"image_token_id": "|SPEAKER|"},
               text=dict(model_type="persimmon", num_key_value_heads=DROP, head_dim=DROP, rms_norm_eps=DROP),
               config=dict(patch_size=8, image_size=48),
               image_processor=("FuyuImageProcessor", _PIXELS)),
           chat_template=TEXT_ONLY_TEMPLATE,
           note="30 px patches embedded linearly (vision_embed_tokens) at |SPEAKER| tokens, |NEWLINE| after each "
                "row, read by a Persimmon decoder (self_attn.dense, final_layernorm); the processor places the image "
                "itself, so the prompt is the text alone; runs at 1080 × 1080 (36 × 36 patches)",
           **dict(TRANSFORMERS_DECODER, output_projection="dense", final_norm="final_layernorm")),
)
