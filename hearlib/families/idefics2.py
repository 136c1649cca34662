"""Idefics2 (``idefics2``).

Layout: a SigLIP tower whose patches a Perceiver resampler (Idefics2PerceiverResampler: learned latents
cross-attending to the patches) turns into ``perceiver_config.resampler_n_latents`` (64) ``<image>`` tokens
per view, each view between ``<fake_token_around_image>`` tokens; with ``do_image_splitting`` four crops and
the whole image (5 views). The latents are ordinary decoder positions, but none covers a part of the
image: the layout names every view's latents as non-spatial (no panels), so attribution works and image
maps have no geometry to draw on. The decoder is under ``model.text_model``.

Tiny model: the SigLIP-like tower 64 px / patch 8, a one-layer resampler of 16 latents (weights drawn at std
0.5: transformers initialises every latent to ones, and at std 0.02 the latents barely move off them, so the
image would barely reach the decoder), a Mistral decoder;
the Idefics2 image processor at 64 px, no splitting (one view). Template (the hub's, HuggingFaceM4/idefics2-8b)
``User:<image>{p}<end_of_utterance>\\nAssistant:`` after the tokenizer's ``<s>``.
"""
from __future__ import annotations

from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["latent_views_layout"]

CROPS_AND_WHOLE = ("crop 0,0", "crop 0,1", "crop 1,0", "crop 1,1", "whole image")


def latent_views_layout(config, processor, sample, width, height):
    """Each view's latents as a non-spatial group: a resampler's latents lie nowhere on the image."""
    per_view = int(config.perceiver_config.resampler_n_latents)
    views = CROPS_AND_WHOLE if getattr(processor.image_processor, "do_image_splitting", False) else ("image",)
    return [], {f"{view} latents": tuple(range(i * per_view, (i + 1) * per_view)) for i, view in enumerate(views)}


IDEFICS2_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].capitalize() }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_PERCEIVER = dict(hidden_size=64, resampler_n_latents=16, resampler_depth=1, resampler_n_heads=2,
                  resampler_head_dim=16, num_key_value_heads=1, initializer_range=0.5)

register(
    Family("Idefics2", "idefics2", "Idefics2ForConditionalGeneration", "Idefics2Processor",
           resolution=(980, 980), layout=latent_views_layout,
           tiny=TinySpec(
               tokens=Tokens(("<unk>", "<s>", "</s>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"),
                             dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"),
                             {"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>"},
                             prepend="<s>"),
               template=IDEFICS2_TEMPLATE, image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_id": "<image>"}, config={"perceiver_config": _PERCEIVER},
               text={"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               image_processor=("Idefics2ImageProcessor", dict(
                   do_image_splitting=False, size={"shortest_edge": 64, "longest_edge": 64},
                   image_mean=[0.5] * 3, image_std=[0.5] * 3)),
               processor={"image_seq_len": 16}),
           note="a Perceiver resampler turns each view into 64 learned-query latents (no grid on the image): the "
                "layout names them non-spatial, so attribution works and image maps have no geometry; "
                "<fake_token_around_image> is not an image token; decoder under model.text_model; runs at 980 × 980",
           **dict(TRANSFORMERS_DECODER, decoder="model.text_model")),
)
