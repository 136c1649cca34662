"""Apertus 1.5 (``apertus1p5``).

Layout: images enter as discrete codes. Apertus1p5ImageProcessor resizes the whole image (``smart_resize``,
sides multiples of ``spatial_factor`` 16, no crop); Apertus1p5VisionTokenizerModel (an EMU3.5 / IBQ VQGAN
encoder, 16× downsampling) gives one code per 16 × 16 pixel block, row-major, and Apertus1p5Model embeds
``code + image_token_offset`` with the text embedding table at the ``<|image|>`` positions
(Apertus1p5Model.get_image_features) of an ordinary softmax-attention decoder. Apertus1p5Processor writes
``boi``, a textual ``H*W`` header, ``image_wrapper``, then the rows of ``<|image|>`` tokens separated by ``eol``
tokens, then ``eoi``: only the ``<|image|>`` tokens are image tokens, so the layout is one row-major grid of
``(h/16, w/16)`` over the whole image. Runs at 448 × 448 (28 × 28 = 784 codes).

Tiny model: the VQ encoder 32 channels wide with two downsamplings (``spatial_factor`` 4), a 64-entry
codebook; the image processor brings every square input to 32 × 32 → 8 × 8 = 64 image tokens; a 2-layer
Apertus decoder (query/key norms, xIELU MLP); a small WavTokenizer encoder (the model always builds its audio
tokenizer). The tokenizer's last entries stand for the 64 image codes and 8 audio codes, so that
``image_token_offset`` + codebook = ``audio_token_offset`` and the audio range ends inside the vocabulary
(Apertus1p5Config.validate_architecture). Template: a stand-in not checked against hub files (none here):
Apertus' ``<|user_start|>…<|user_end|><|assistant_start|>`` turns after the tokenizer's BOS, the image as
``<|image|>`` before the text; the special tokens' spellings are stand-ins too.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["code_grid_layout"]


def code_grid_layout(config, processor, sample, width, height):
    """One row-major grid of codes over the whole image: ``image_sizes // spatial_factor``."""
    resized_height, resized_width = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    factor = int(processor.image_processor.spatial_factor)
    rows, cols = resized_height // factor, resized_width // factor
    if rows * cols != sample.n_image:
        raise UnsupportedModel(f"Apertus 1.5: {sample.n_image} image tokens, but a {rows} × {cols} code grid")
    return single_grid(rows, cols, width, height), {}


APERTUS_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant_start|>{% else %}<|user_start|>{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|image|>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}<|assistant_end|>{% else %}<|user_end|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant_start|>{% endif %}"
)
_CODEBOOK, _AUDIO_CODEBOOK = 64, 8
# stand-ins for the codes the model embeds with the text table: image codes, then audio codes, last in the vocabulary
_CODES = tuple(f"<|visual_{i}|>" for i in range(_CODEBOOK)) + tuple(f"<|audio_{i}|>" for i in range(_AUDIO_CODEBOOK))
_NAMED = {"image_token": "<|image|>", "audio_token": "<|audio|>", "boi_token": "<|image_start|>",
          "eoi_token": "<|image_end|>", "image_wrapper_token": "<|image_wrapper|>", "eol_token": "<|image_eol|>",
          "boa_token": "<|audio_start|>", "eoa_token": "<|audio_end|>"}
_VQ = dict(codebook_size=_CODEBOOK, embed_dim=32, latent_channels=32, base_channels=32, channel_multiplier=[1, 1, 1],
           num_res_blocks=1, attn_resolutions=[], resolution=32)
_WAVTOKENIZER = dict(model_type="wavtokenizer_encoder", num_filters=8, upsampling_ratios=[2, 2], hidden_size=16,
                     codebook_size=_AUDIO_CODEBOOK, codebook_dim=16, num_lstm_layers=1)

register(
    Family("Apertus 1.5", "apertus1p5", "Apertus1p5ForConditionalGeneration", "Apertus1p5Processor",
           resolution=(448, 448), layout=code_grid_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<s>", "</s>", "<unk>", "<|user_start|>", "<|user_end|>",
                              "<|assistant_start|>", "<|assistant_end|>", *_NAMED.values()),
                             dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
                             _NAMED, prepend="<s>", extra_words=("*", "8", *_CODES)),
               template=APERTUS_TEMPLATE, image_tokens=64, processed_size=(32, 32),
               token_ids={"image_token_id": "<|image|>", "audio_token_id": "<|audio|>",
                          "image_token_offset": "<|visual_0|>", "audio_token_offset": "<|audio_0|>"},
               text={"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               vision=_VQ, config=dict(audio_config=_WAVTOKENIZER),
               image_processor=("Apertus1p5ImageProcessor", dict(size={"min_pixels": 32 * 32, "max_pixels": 32 * 32},
                                                                  spatial_factor=4)),
               feature_extractor=("WavTokenizerFeatureExtractor", dict(hop_length=4))),
           note="images enter as discrete VQ codes (one per 16 × 16 px block, row-major) embedded with the text "
                "table at the <|image|> tokens; eol tokens between rows and the H*W header are not image tokens; "
                "runs at 448 × 448 (28 × 28 codes)",
           **TRANSFORMERS_DECODER),
)
