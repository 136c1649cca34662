"""The Qwen-Omni thinkers: Qwen2.5-Omni's and Qwen3-Omni-MoE's text-generating half, run on images alone.

A thinker (``Qwen2_5OmniThinkerForConditionalGeneration``, ``Qwen3OmniMoeThinkerForConditionalGeneration``)
is a Qwen2.5-VL / Qwen3-VL-style vision tower, an audio encoder and a softmax-attention decoder
(``model.language_model``, attention through ``ALL_ATTENTION_FUNCTIONS`` with ``layer_idx``); image features
replace the image tokens' embeddings (``masked_scatter``), and audio inputs may be absent. transformers maps
no processor to the thinker types; the checkpoints' processors are ``Qwen2_5OmniProcessor`` and
``Qwen3OmniMoeProcessor`` (an image processor, a video processor, a Whisper feature extractor, a tokenizer).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (one grid of 2 × 2 merged patches).

Tiny models: the Qwen2-VL image processor (square inputs → 64 × 64 → 16 image tokens), a 2-layer audio
encoder of width 32 (never fed), M-RoPE [2, 3, 3] (Qwen3-Omni interleaved); Qwen3-Omni's decoder has
mixture-of-experts MLPs and its vision tower DeepStack features from block 0. Qwen2.5-Omni's template is
ChatML with ``<|vision_bos|><|IMAGE|><|vision_eos|>``; Qwen3-Omni's has no default system turn and
``<|vision_start|><|image_pad|><|vision_end|>``.
"""
from __future__ import annotations

from hearlib.families.qwen2_vl import MROPE, qwen_layout, qwen_pixels
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, chatml

def _omni_tokens(audio: str, audio_bos: str, audio_eos: str, vision_bos: str, vision_eos: str, image: str,
                 video: str) -> Tokens:
    """ChatML's tokens, then a thinker's audio, vision and media tokens (in this order of ids), named as its
    processor names them."""
    return Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", audio, audio_bos, audio_eos, vision_bos,
                   vision_eos, image, video), dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                  {"image_token": image, "video_token": video, "audio_token": audio, "vision_bos_token": vision_bos,
                   "vision_eos_token": vision_eos, "audio_bos_token": audio_bos, "audio_eos_token": audio_eos})


QWEN2_5_OMNI_TOKENS = _omni_tokens("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|vision_bos|>", "<|vision_eos|>",
                                   "<|IMAGE|>", "<|VIDEO|>")
QWEN3_OMNI_TOKENS = _omni_tokens("<|audio_pad|>", "<|audio_start|>", "<|audio_end|>", "<|vision_start|>",
                                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

QWEN2_5_OMNI_TEMPLATE = chatml(HELPFUL, "<|vision_bos|><|IMAGE|><|vision_eos|>")
QWEN3_OMNI_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# a 2-layer audio encoder of width 32 emitting the decoder's width (the default is Whisper-large-sized)
_AUDIO = dict(num_mel_bins=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32,
              output_dim=64, max_source_positions=64)
_FEATURES = ("WhisperFeatureExtractor", dict(feature_size=16))
_REQUIRES = ("5.21", "transformers 5.20 and older hold the thinker's decoder elsewhere than model.language_model")


def _omni_spec(tokens: Tokens, template: str, index: str, text: dict, audio: dict, **pixels) -> TinySpec:
    """A thinker's tiny spec; its config names the image, video and audio token ids ``{kind}_token{index}``
    (``_index`` in Qwen2.5-Omni, ``_id`` in Qwen3-Omni) and the vision and audio markers ``…_start/end_token_id``."""
    named = tokens.named
    ids = {f"{kind}_token{index}": named[f"{kind}_token"] for kind in ("image", "video", "audio")}
    ids |= {f"{kind}_{end}_token_id": named[f"{kind}_{marker}_token"] for kind in ("vision", "audio")
            for end, marker in (("start", "bos"), ("end", "eos"))}
    return TinySpec(tokens=tokens, template=template, image_tokens=16, processed_size=(64, 64), token_ids=ids,
                    text={"head_dim": DROP, **text}, config={"audio_config": {**_AUDIO, **audio}},
                    image_processor=("Qwen2VLImageProcessor", qwen_pixels(**pixels)),
                    video_processor=("Qwen2VLVideoProcessor", qwen_pixels(**pixels)), feature_extractor=_FEATURES)


register(
    Family("Qwen2.5-Omni (thinker)", "qwen2_5_omni_thinker", "Qwen2_5OmniThinkerForConditionalGeneration",
           "Qwen2_5OmniProcessor", resolution=(448, 448), layout=qwen_layout,
           tiny=_omni_spec(QWEN2_5_OMNI_TOKENS, QWEN2_5_OMNI_TEMPLATE, "_index", {"rope_parameters": MROPE}, {}),
           note="the thinker of Qwen2.5-Omni: Qwen2.5-VL's window-attention tower and layout (patch 14, 2 × 2 "
                "merge) and an audio encoder before a Qwen2 decoder with M-RoPE; image-only inputs; the processor "
                "is Qwen2_5OmniProcessor (transformers maps none to the thinker); runs at 448 × 448",
           requires=_REQUIRES, **TRANSFORMERS_DECODER),
    Family("Qwen3-Omni-MoE (thinker)", "qwen3_omni_moe_thinker", "Qwen3OmniMoeThinkerForConditionalGeneration",
           "Qwen3OmniMoeProcessor", resolution=(448, 448), layout=qwen_layout,
           tiny=_omni_spec(QWEN3_OMNI_TOKENS, QWEN3_OMNI_TEMPLATE, "_id",
                           {"rope_parameters": {**MROPE, "mrope_interleaved": True}, "num_experts": 4,
                            "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1},
                           {"downsample_hidden_size": 32, "n_window": 50}, mean=[0.5] * 3, std=[0.5] * 3),
           note="the thinker of Qwen3-Omni: a Qwen3-VL-style tower (patch 16, 2 × 2 merge, DeepStack) and an "
                "audio encoder before a mixture-of-experts decoder with interleaved M-RoPE; image-only inputs; "
                "the processor is Qwen3OmniMoeProcessor (transformers maps none to the thinker); runs at 448 × 448",
           requires=_REQUIRES, **TRANSFORMERS_DECODER),
)
