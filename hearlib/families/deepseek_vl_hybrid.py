"""DeepSeek-VL hybrid (``deepseek_vl_hybrid``: DeepSeek-VL 7B, SigLIP + SAM).

Layout: :func:`hearlib.families.deepseek_vl.deepseek_vl_layout`: one 24 × 24 grid (384 px / patch 16) over
the image padded to a square. Each image token joins, channel-wise (``DeepseekVLHybridAligner``), the
SigLIP token of its cell and the SAM high-resolution features (1024 px / patch 16, 64 × 64 windowed ViT,
``DeepseekVLSamVisionProj``: resized to 96 × 96, then two stride-2 3 × 3 convolutions) at the same cell,
so a token also reads a margin of its neighbours' pixels. The joined features are written over the
``<image_placeholder>`` tokens (``masked_scatter``) of a Llama decoder. Only square inputs (no padding).

Tiny model: SigLIP 64 px / patch 8 → 8 × 8 = 64 image tokens, SAM 64 px / patch 8 (8 × 8, windows of 4,
layer 1 global), a Llama decoder; both image processors pad to a square, then resize to 64 × 64.
The hub's template (transformers' ``convert_deepseek_vl_hybrid_weights_to_hf.CHAT_TEMPLATE``): the default
system prompt, then ``User: <image_placeholder>{p}\\n\\nAssistant:``.
"""
from __future__ import annotations

from hearlib.families.deepseek_vl import deepseek_vl_layout
from hearlib.families.janus import BOS, EOS
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

# transformers' convert_deepseek_vl_hybrid_weights_to_hf.CHAT_TEMPLATE (deepseek-community/deepseek-vl-7b-chat)
DEEPSEEK_VL_HYBRID_TEMPLATE = (
    "{% set seps = ['\n\n', '<\uff5cend\u2581of\u2581sentence\uff5c>'] %}"
    "{% set i = 0 %}"
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language.\n\n"
    "{% for message in messages %}"
    "{% if message['role']|lower == 'user' %}"
    "User: "
    "{% elif message['role']|lower == 'assistant' %}"
    "Assistant:{% if not (loop.last and not add_generation_prompt and message['content'][0]['type']=='text' and "
    "message['content'][0]['text']=='') %} {% endif %}"
    "{% else %}"
    "{{ message['role'].capitalize() }}: "
    "{% endif %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}"
    "<image_placeholder>"
    "{% elif content['type'] == 'text' %}"
    "{% set text = content['text'] %}"
    "{% if loop.first %}{% set text = text.lstrip() %}{% endif %}"
    "{% if loop.last %}{% set text = text.rstrip() %}{% endif %}"
    "{% if not loop.first and message['content'][loop.index0-1]['type'] == 'text' %}"
    "{{ ' ' + text }}"
    "{% else %}"
    "{{ text }}"
    "{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if not loop.last or add_generation_prompt %}"
    "{% if message['role']|lower == 'user' %}"
    "{{ seps[0] }}"
    "{% else %}"
    "{{ seps[1] }}"
    "{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

# SAM's config draws its weights at std 1e-10 (initializer_range), which would hide the high-res path
SAM = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
           patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=64, initializer_range=0.02)
PIXELS = dict(size={"height": 64, "width": 64}, high_res_size={"height": 64, "width": 64},
              image_mean=[0.5] * 3, image_std=[0.5] * 3)

register(
    Family("DeepSeek-VL hybrid", "deepseek_vl_hybrid", "DeepseekVLHybridForConditionalGeneration",
           "DeepseekVLHybridProcessor", resolution=(1024, 1024), layout=deepseek_vl_layout,
           tiny=TinySpec(
               tokens=Tokens((BOS, EOS, "<unk>", "<image_placeholder>"),
                             dict(bos_token=BOS, eos_token=EOS, unk_token="<unk>", pad_token=EOS),
                             {"image_token": "<image_placeholder>"}, prepend=BOS, extra_words=("User", "Assistant")),
               template=DEEPSEEK_VL_HYBRID_TEMPLATE, image_tokens=64, processed_size=(64, 64),
               token_ids={"image_token_id": "<image_placeholder>"}, vision={"vision_use_head": False},
               config=dict(high_res_vision_config=SAM),
               image_processor=("DeepseekVLHybridImageProcessor", PIXELS),
               processor={"num_image_tokens": 64}),
           note="a 24 × 24 SigLIP grid (384 px) joined per cell with SAM high-resolution features (1024 px, "
                "two stride-2 convolutions after the tower) over the image padded to a square; a Llama decoder; "
                "runs at 1024 × 1024 (no padding)",
           **TRANSFORMERS_DECODER),
)
