"""PaliGemma (``paligemma``; the tiny model is PaliGemma 2's kind).

Layout: one SigLIP grid of ``(image_size/patch)²`` tokens over the whole image, resized without a crop.

Tiny model: SigLIP 32 px / patch 8 → 16 image tokens; a Gemma 2 decoder as in PaliGemma 2 (attention
soft-cap 0.05 with scale 1, final soft-cap 3, layer 0 sliding with window 12). Template
``<image>{p}``; the processor makes it 16 × ``<image>`` + ``<bos>`` + ``{p}`` + ``\\n`` and the whole
prompt prefix (image, <bos>, prompt) attends bidirectionally (a prefix-LM). The processor adds
PaliGemma's ``<loc####>``/``<seg###>`` tokens to the tokenizer, which the vocabulary counts.
"""
from __future__ import annotations

from hearlib.families.gemma3 import GEMMA_ROLES, SLIDING_THEN_FULL
from hearlib.families.geometry import pair, whole_image_grid
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["paligemma_layout", "paligemma_final_softcap"]


def paligemma_layout(config, processor, sample, width, height):
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(pair(vision.image_size), pair(vision.patch_size)))
    return whole_image_grid(processor.image_processor, rows, cols, width, height, "PaliGemma"), {}


def paligemma_final_softcap(model) -> float | None:
    """From transformers 5.23 on, ``PaliGemmaForConditionalGeneration`` soft-caps its logits with the text
    config's ``final_logit_softcapping`` (PaliGemma 2's Gemma 2 decoder: ``models/paligemma/modeling_paligemma.py``,
    ``logits = tanh(logits / cap) * cap``); the releases before it return the logits uncapped."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__).release >= (5, 23):
        return getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    return None


# no chat turns: "<image>" then the prompt; the processor inserts <bos> after the image tokens and "\n" at the end
PALIGEMMA_TEMPLATE = (
    "{% for message in messages %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endfor %}"
)

register(
    Family("PaliGemma", "paligemma", "PaliGemmaForConditionalGeneration", "PaliGemmaProcessor",
           resolution=None, layout=paligemma_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<eos>", "<bos>", "<unk>", "<image>"), GEMMA_ROLES, {"image_token": "<image>"}),
               template=PALIGEMMA_TEMPLATE, image_tokens=16, processed_size=(32, 32),
               token_ids={"image_token_index": "<image>"},
               text=dict(model_type="gemma2", query_pre_attn_scalar=1, attn_logit_softcapping=0.05,
                         final_logit_softcapping=3.0, **SLIDING_THEN_FULL),
               vision=dict(image_size=32, projection_dim=64),
               config={"vocab_size": DROP},        # the wrapper's own copy, unused: transformers' default stays
               image_processor=("SiglipImageProcessor", dict(
                   do_resize=True, size={"height": 32, "width": 32}, resample=3, do_rescale=True,
                   rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                   do_convert_rgb=True, image_seq_length=16))),
           note="one SigLIP grid over the whole image; a prefix-LM: image and prompt attend to each other "
                "bidirectionally, so the fast path's premise fails and the engine runs the literal path; "
                "from transformers 5.23 the wrapper soft-caps the final logits (PaliGemma 2), which the engine "
                "then applies too",
           final_softcap=paligemma_final_softcap, **TRANSFORMERS_DECODER),
)
