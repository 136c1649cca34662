"""Emu3 (``emu3``).

Layout: images enter as discrete codes. Emu3ImageProcessor resizes the whole image (``smart_resize``, sides
multiples of ``spatial_factor`` 8, area within ``min_pixels``..``max_pixels``, no crop); Emu3VQVAE (an 8×
downsampling VQ encoder over the image repeated ``temporal_downsample_factor`` times) gives one code per 8 × 8
pixel block, row-major, and Emu3ImageVocabularyMapping turns each row of codes into its ``<|visual token N|>``
ids followed by one ``<|extra_200|>`` end-of-line id. Emu3Processor writes ``<|image start|>{h}*{w}<|image
token|>``, then ``h·(w+1)`` ``<image>`` placeholders, then ``<|extra_201|><|image end|>``; Emu3Model embeds the
ids with the text table and scatters them over the placeholders of an ordinary softmax-attention decoder
(``model.text_model``). HeAr's image tokens are the positions whose input id is ``config.image_token_id``
(docs/METHOD.md, "Choices this project made"): all ``h·(w+1)`` placeholders, so the end-of-line tokens are
image tokens, as LLaVA-NeXT's ``image_newline`` rows are; their input is the one ``<|extra_200|>`` embedding
whatever the image and they cover no part of it, so the layout names them non-spatial ("row ends") and the
codes one row-major ``h × w`` grid over the whole image. Runs at 512 × 512, the smallest area Emu3ImageProcessor's default
``min_pixels`` (512²) allows: 64 × 64 codes, 4160 image tokens.

Tiny model: the VQ encoder 32 channels wide with three downsamplings (the processor's fixed
``downsample_ratio`` 8), a 64-entry codebook, no attention in the down blocks; the image processor brings every
square input to 64 × 64 → 8 × 8 codes + 8 row ends = 72 image tokens. The tokenizer holds the 64
``<|visual token NNNNNN|>`` words, and ``vocabulary_map`` is its vocabulary (as a checkpoint's config holds
the whole vocabulary). Template: a stand-in not checked against hub files (none here): Emu3's own
``You are a helpful assistant. USER: {image}{text} ASSISTANT:`` (BAAI's processor, without the period it
appends after the text); the processor writes the BOS (``<|extra_203|>``) itself.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import Panel, regular_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["code_rows_layout"]


def code_rows_layout(config, processor, sample, width, height):
    """One row-major ``h × w`` grid of codes over the whole image, each row followed by a non-spatial row end:
    ``h, w = image_sizes // downsample_ratio``."""
    resized_height, resized_width = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    ratio = int(processor.downsample_ratio)
    rows, cols = resized_height // ratio, resized_width // ratio
    if rows * (cols + 1) != sample.n_image:
        raise UnsupportedModel(f"Emu3: {sample.n_image} image tokens, but a {rows} × {cols} code grid with a row "
                               f"end after each row ({rows * (cols + 1)})")
    grid = Panel("base", regular_grid(0, cols + 1, rows, cols), (0.0, 0.0, float(width), float(height)))
    row_ends = tuple(r * (cols + 1) + cols for r in range(rows))
    return [grid], {"row ends": row_ends}


def vocabulary_map(tokenizer) -> dict[str, int]:
    """The tokenizer's whole vocabulary, which Emu3Config reads the image, end-of-line and code ids from."""
    return dict(tokenizer.get_vocab())


EMU3_TEMPLATE = (
    "You are a helpful assistant."
    "{% for message in messages %}"
    " {% if message['role'] == 'assistant' %}ASSISTANT{% else %}USER{% endif %}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)
_CODEBOOK = 64
_CODES = tuple(f"<|visual token {i:06d}|>" for i in range(_CODEBOOK))
_NAMED = {"image_token": "<image>", "boi_token": "<|image start|>", "eoi_token": "<|image end|>",
          "image_wrapper_token": "<|image token|>", "eof_token": "<|extra_201|>"}
_VQ = dict(codebook_size=_CODEBOOK, embed_dim=32, latent_channels=32, base_channels=32,
           channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], hidden_size=32,
           num_attention_heads=2)

register(
    Family("Emu3", "emu3", "Emu3ForConditionalGeneration", "Emu3Processor",
           resolution=(512, 512), layout=code_rows_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<|extra_203|>", "<|extra_204|>", "<unk>", *_NAMED.values(),
                              "<|extra_200|>"),
                             dict(bos_token="<|extra_203|>", eos_token="<|extra_204|>", unk_token="<unk>",
                                  pad_token="<|endoftext|>"),
                             _NAMED, extra_words=("*", "8", *_CODES)),
               template=EMU3_TEMPLATE, image_tokens=72, processed_size=(64, 64),
               config=dict(vq_config=_VQ, vocabulary_map=vocabulary_map),
               image_processor=("Emu3ImageProcessor", dict(min_pixels=64 * 64, max_pixels=64 * 64,
                                                             spatial_factor=8))),
           note="images enter as discrete VQ codes (one per 8 × 8 px block, row-major) embedded with the text "
                "table over the <image> placeholders, each row followed by an <|extra_200|> row end that is an "
                "<image> position too (non-spatial); the h*w header is not image tokens; runs at 512 × 512 "
                "(64 × 64 codes, 4160 image tokens)",
           **{**TRANSFORMERS_DECODER, "decoder": "model.text_model"}),
)
