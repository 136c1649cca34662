"""Janus and Janus-Pro (``janus``).

Layout: :func:`hearlib.families.deepseek_vl.deepseek_vl_layout`: one SigLIP-style grid (384 px / patch 16:
24 × 24 = 576 ``<image_placeholder>`` tokens, no class token) over the image padded to a square, which
``JanusModel.get_image_features`` maps through the MLP aligner and writes over the image tokens
(``masked_scatter``) of a Llama decoder; only square inputs (no padding) are supported. The VQ-VAE
(``JanusVQVAE``) and generation head serve image generation only and do not touch a text answer.

Tiny model: the Janus vision tower 64 px / patch 8 → 8 × 8 = 64 image tokens between
``<begin_of_image>`` and ``<end_of_image>``, a 2-layer aligner, a small VQ-VAE, a Llama decoder; the
image processor pads to a square, then resizes to 64 × 64. The processor puts the default system prompt
before the text, as the hub's (``use_default_system_prompt``); the template is the hub's
(transformers' ``convert_janus_weights_to_hf.CHAT_TEMPLATE``): ``<|User|>: <image_placeholder>\\n{p}\\n\\n<|Assistant|>:``.
"""
from __future__ import annotations

from hearlib.families.deepseek_vl import deepseek_vl_layout
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

# transformers' convert_janus_weights_to_hf.CHAT_TEMPLATE (the hub's Janus-Pro template)
JANUS_TEMPLATE = (
    "{%set seps=['\n\n','<\uff5cend\u2581of\u2581sentence\uff5c>']%}"
    "{%set i=0%}"
    "{%for message in messages%}"
    "{%if message['role']|lower=='user'%}"
    "<|User|>: "
    "{%elif message['role']|lower=='assistant'%}"
    "<|Assistant|>:{%if not (loop.last and not add_generation_prompt and message['content'][0]['type']=='text' and "
    "message['content'][0]['text']=='')%} {%endif%}"
    "{%else%}"
    "{{message['role'].capitalize()}}: "
    "{%endif%}"
    "{%for content in message['content']%}"
    "{%if content['type']=='image'%}"
    "{%if not loop.first%}{{'\n'}}{%endif%}"
    "<image_placeholder>"
    "{%if not loop.last%}{{'\n'}}{%endif%}"
    "{%elif content['type']=='text'%}"
    "{%set text=content['text']%}"
    "{%if loop.first%}{%set text=text.lstrip()%}{%endif%}"
    "{%if loop.last%}{%set text=text.rstrip()%}{%endif%}"
    "{%if not loop.first and message['content'][loop.index0-1]['type']=='text'%}"
    "{{' '+text}}"
    "{%else%}"
    "{{text}}"
    "{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if not loop.last or add_generation_prompt%}"
    "{%if message['role']|lower=='user'%}"
    "{{seps[0]}}"
    "{%else%}"
    "{{seps[1]}}"
    "{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if add_generation_prompt%}<|Assistant|>:{%endif%}"
)

BOS, EOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"
# small enough for a tiny model; GroupNorm(32) needs channels in multiples of 32
VQ = dict(num_embeddings=64, latent_channels=32, base_channels=32, channel_multiplier=[1, 2], num_res_blocks=1,
          projection_dim=64, image_token_embed_dim=64)

register(
    Family("Janus", "janus", "JanusForConditionalGeneration", "JanusProcessor",
           resolution=(384, 384), layout=deepseek_vl_layout,
           tiny=TinySpec(
               tokens=Tokens((BOS, EOS, "<unk>", "<pad>", "<image_placeholder>", "<begin_of_image>",
                              "<end_of_image>", "<|User|>", "<|Assistant|>"),
                             dict(bos_token=BOS, eos_token=EOS, unk_token="<unk>", pad_token="<pad>"),
                             {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                              "eoi_token": "<end_of_image>"}, prepend=BOS),
               template=JANUS_TEMPLATE, image_tokens=64, processed_size=(64, 64),
               token_ids={"image_token_id": "<image_placeholder>"},
               vision=dict(projection_dim=64, num_image_tokens=64), config=dict(vq_config=VQ),
               image_processor=("JanusImageProcessor", dict(size={"height": 64, "width": 64},
                                                            image_mean=[0.5] * 3, image_std=[0.5] * 3)),
               processor=dict(num_image_tokens=64, use_default_system_prompt=True)),
           note="one SigLIP-style grid (384 px / patch 16: 24 × 24 = 576 tokens) over the image padded to a square "
                "and a Llama decoder; the VQ-VAE and generation head serve image generation only; runs at "
                "384 × 384 (no padding)",
           **TRANSFORMERS_DECODER),
)
