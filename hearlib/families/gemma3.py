"""Gemma 3 (``gemma3``) and Gemma 3n (``gemma3n``).

Layout: the SigLIP grid of ``(image_size/patch)²`` patches average-pooled to
``sqrt(mm_tokens_per_image)²`` tokens (16 × 16 for the real model) over the whole image, resized
without a crop; pan-and-scan crops are refused. ``<start_of_image>``/``<end_of_image>`` are not image
tokens.

Tiny model: SigLIP 64 px / patch 8 (8 × 8 patches) average-pooled to 4 × 4 = 16 tokens; the decoder's
layer 0 is a sliding-window layer with a window (12) shorter than the sequence, layer 1 full
attention; ``query_pre_attn_scalar`` 24 (scale 24^-1/2, not head_dim^-1/2). Template
``<bos><start_of_turn>user\\n<start_of_image>{p}<end_of_turn>\\n<start_of_turn>model\\n``; the processor
expands ``<start_of_image>`` to ``<start_of_image>`` + 16 × ``<image_soft_token>`` + ``<end_of_image>``;
``token_type_ids`` mark the image block (bidirectional).

Gemma 3n: a timm MobileNetV5 tower (``TimmWrapperModel``; timm must be installed) whose last feature map,
``sqrt(vision_soft_tokens_per_image)²`` cells (16 × 16 at 768 px), becomes the image tokens row-major over the
whole image; the image block is causal. Its decoder differs from Gemma 3's: AltUp carries four streams per
position (the layers take and return them stacked before the batch, so the fast path runs every mask through
every layer: ``fast_groups=False``), each layer adds a per-layer embedding of the token's id (passed to the
fast path's text-only forward: ``decoder_position_inputs``), and the last ``num_kv_shared_layers`` layers
compute no keys/values but read those of the last earlier layer of their kind (sliding or full) as that layer
stored them before its attention function: each is a covered layer whose own heads read the sample's or the
mean keys/values at the image positions. Tiny model: timm's ``test_convnext`` narrowed to 32 channels, 128 px
-> 4 × 4 = 16 tokens; four layers (sliding, full, sliding, full), the last two reading the first two's keys and
values; template ``<bos><start_of_turn>user\n<image_soft_token>{p}<end_of_turn>\n<start_of_turn>model\n``, the
processor expanding ``<image_soft_token>`` to ``\n\n<start_of_image>`` + 16 × ``<image_soft_token>`` +
``<end_of_image>\n\n``.
"""
from __future__ import annotations

import math

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import whole_image_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["gemma3_layout", "gemma3n_layout", "GEMMA_ROLES", "SLIDING_THEN_FULL"]


def gemma3_layout(config, processor, sample, width, height):
    if int(sample.inputs["pixel_values"].shape[0]) != 1:
        raise UnsupportedModel("Gemma 3: pan-and-scan crops are not supported; turn do_pan_and_scan off")
    side = math.isqrt(int(config.mm_tokens_per_image))
    if side * side != int(config.mm_tokens_per_image):
        raise UnsupportedModel(f"Gemma 3: mm_tokens_per_image={config.mm_tokens_per_image} is not a square")
    return whole_image_grid(processor.image_processor, side, side, width, height, "Gemma 3"), {}


GEMMA_ROLES = dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")
# layer 0 slides over a window shorter than a tiny prompt (about 40 tokens), layer 1 sees everything
SLIDING_THEN_FULL = dict(sliding_window=12, layer_types=["sliding_attention", "full_attention"])
# as the hub's, without system-turn handling: <bos>, turns, <start_of_image> where the image goes
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def gemma3n_layout(config, processor, sample, width, height):
    side = math.isqrt(int(config.vision_soft_tokens_per_image))
    if side * side != int(config.vision_soft_tokens_per_image):
        raise UnsupportedModel(f"Gemma 3n: vision_soft_tokens_per_image={config.vision_soft_tokens_per_image} "
                               "is not a square")
    return whole_image_grid(processor.image_processor, side, side, width, height, "Gemma 3n"), {}


# as the hub's: the image is one <image_soft_token>, which the processor expands to
# "\n\n<start_of_image>" + image_seq_length × <image_soft_token> + "<end_of_image>\n\n"
GEMMA3N_TEMPLATE = GEMMA3_TEMPLATE.replace("<start_of_image>", "<image_soft_token>")
# four layers (sliding, full, sliding, full) of which the last two read the keys/values of the first two,
# as in transformers' default configuration the last 15 of 35 read those of layers 18 and 19; the per-layer
# embedding table covers the tiny vocabulary
GEMMA3N_DECODER = dict(num_hidden_layers=4, sliding_window=12, num_kv_shared_layers=2,
                       layer_types=["sliding_attention", "full_attention"] * 2,
                       activation_sparsity_pattern=[0.95, 0.0, 0.0, 0.0], vocab_size_per_layer_input=512,
                       hidden_size_per_layer_input=16, laurel_rank=8, altup_num_inputs=4)


def active_stream(config, streams):
    """The AltUp stream a Gemma 3n decoder layer's attention and MLP read and write, of the layer's stacked
    output [altup_num_inputs, B, T, d] (the others carry predictions for it)."""
    return streams[config.get_text_config().altup_active_idx]


def scale_altup_corrections(model) -> None:
    """AltUp's ``correct_output_scale`` set to ones: transformers initialises it to zeros, which would zero the
    per-layer embeddings' term (the hub's are trained)."""
    for layer in model.model.language_model.layers:
        layer.altup.correct_output_scale.fill_(1.0)


# the audio tower is built with the model but never run (HeAr concerns image -> text)
GEMMA3N_AUDIO = dict(hidden_size=32, conf_num_attention_heads=2, conf_num_hidden_layers=1,
                     sscp_conv_channel_size=[8, 8])

register(
    Family("Gemma 3", "gemma3", "Gemma3ForConditionalGeneration", "Gemma3Processor",
           resolution=None, layout=gemma3_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                              "<start_of_image>", "<end_of_image>", "<image_soft_token>"), GEMMA_ROLES,
                             {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                              "eoi_token": "<end_of_image>"}, extra_words=("model",)),
               template=GEMMA3_TEMPLATE, image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_index": "<image_soft_token>", "boi_token_index": "<start_of_image>",
                          "eoi_token_index": "<end_of_image>"},
               text=dict(query_pre_attn_scalar=24, **SLIDING_THEN_FULL), vision={"vision_use_head": False},
               config={"mm_tokens_per_image": 16},
               image_processor=("Gemma3ImageProcessor", dict(
                   do_resize=True, size={"height": 64, "width": 64}, resample=2, do_rescale=True,
                   rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                   do_convert_rgb=True, do_pan_and_scan=False)),
               processor={"image_seq_length": 16}),
           note="SigLIP 896 px average-pooled to 16 × 16 = 256 tokens, resized whole (pan-and-scan off); "
                "the image block attends bidirectionally and 5 of 6 layers use a sliding window (the "
                "engine follows the model's masks); <start_of_image>/<end_of_image> are not image tokens",
           **TRANSFORMERS_DECODER),
    Family("Gemma 3n", "gemma3n", "Gemma3nForConditionalGeneration", "Gemma3nProcessor",
           resolution=None, layout=gemma3n_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                              "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_audio>",
                              "<end_of_audio>", "<audio_soft_token>"), GEMMA_ROLES,
                             {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                              "eoi_token": "<end_of_image>", "audio_token": "<audio_soft_token>",
                              "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>"},
                             extra_words=("model",)),
               template=GEMMA3N_TEMPLATE, image_tokens=16, processed_size=(128, 128),
               token_ids={"image_token_id": "<image_soft_token>", "boi_token_id": "<start_of_image>",
                          "eoi_token_id": "<end_of_image>", "audio_token_id": "<audio_soft_token>",
                          "boa_token_id": "<start_of_audio>", "eoa_token_id": "<end_of_audio>"},
               text=GEMMA3N_DECODER,
               # timm's test ConvNeXt narrowed to the tower width: 128 px -> a 4 × 4 grid of 32 channels
               vision={"architecture": "test_convnext",
                       "model_args": {"dims": [16, 16, 32, 32], "depths": [1, 1, 1, 1]}},
               config={"vision_soft_tokens_per_image": 16, "audio_config": GEMMA3N_AUDIO},
               image_processor=("SiglipImageProcessor", dict(
                   do_resize=True, size={"height": 128, "width": 128}, resample=2, do_rescale=True,
                   rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                   do_convert_rgb=True)),
               feature_extractor=("Gemma3nAudioFeatureExtractor", {}),
               processor={"image_seq_length": 16}, weights=scale_altup_corrections),
           note="MobileNetV5 (a timm tower) at 768 px: a 16 × 16 grid of 256 tokens over the whole image, "
                "resized without a crop; the decoder's last num_kv_shared_layers layers read the keys/values "
                "of the last earlier layer of their kind (each is ablated where it reads them); AltUp streams, "
                "LAuReL and per-layer token embeddings as the model computes them; audio unused",
           decoder_position_inputs=("per_layer_inputs",), fast_groups=False, layer_residual=active_stream,
           **TRANSFORMERS_DECODER),
)
