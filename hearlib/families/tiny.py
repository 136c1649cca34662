"""Tiny random-weight vision-language models of every registered family, built offline.

:func:`build_tiny` writes a model *and* a working processor (tokenizer, image processor,
chat template) into a folder with ``save_pretrained``, so that
``transformers.AutoProcessor.from_pretrained(dir)`` and
``transformers.AutoModelForImageTextToText.from_pretrained(dir)`` load it exactly like a hub
checkpoint. Every family uses transformers' own model, processor and image-processor classes;
nothing is downloaded. The tokenizer is a word-level ``tokenizers`` model over a fixed
vocabulary (the paper prompt and the appendix prompts, role words, answer words,
punctuation) plus each family's special tokens, wrapped in ``PreTrainedTokenizerFast``.
Words outside the vocabulary map to ``<unk>``; white space (including ``\\n``) only splits
words and is not a token.

From the command line, ``python -m hearlib.families.tiny tiny --family gemma3 --out DIR`` writes the
same folder as ``build_tiny("gemma3", DIR)`` (``--seed``; ``python -m hearlib.families.tiny list``
prints the families); the folder then works wherever a model is asked for
(``make figures MODELS="DIR ..."``, ``hearlib run --model DIR``).

All decoders have 2 layers, 4 query heads and 2 key/value heads (GQA), head_dim 16
(hidden 64). The decoder is ``model.model.language_model`` in every family and the text
config is ``model.config.text_config``; the image token id is ``model.config.image_token_id``
in every family (it equals ``processor.image_token_id`` and
``tokenizer.convert_tokens_to_ids(processor.image_token)``). These are the paths the records of
:mod:`hearlib.families.registry` hold.

Per family (``processor.apply_chat_template`` of one user turn ``[image, text p]`` with
``add_generation_prompt=True``; "fixed size" is what the image processor turns *any*
square input into, e.g. the 48×48 test images or the 336/448 px resolution that
``Family.resolution`` resizes to first). Each family's record in :mod:`hearlib.families.registry` names
its builder here (``tiny_llava`` ...), the image tokens and the processed size below; the
families, :data:`NUM_IMAGE_TOKENS` and :data:`PROCESSED_SIZE` are read from those records:

``llava`` -- ``LlavaForConditionalGeneration`` (CLIP vision 32 px, patch 8, CLS dropped by
    ``vision_feature_select_strategy="default"``, Llama decoder), ``LlavaProcessor`` +
    ``CLIPImageProcessor`` (resize shortest edge 32, center crop 32×32).
    Template: ``USER: <image>\\n{p} ASSISTANT:``; the tokenizer prepends ``<s>``.
    Image token ``<image>``; 16 image tokens (4×4 patches).
``llava_next`` -- ``LlavaNextForConditionalGeneration`` (same towers) +
    ``LlavaNextProcessor`` / ``LlavaNextImageProcessor`` with ``image_grid_pinpoints``
    ``[[32, 32], [32, 64], [64, 32]]``. A square input picks the 32×32 pinpoint: base image
    (16) + one 4×4 crop with an ``image_newline`` per row (20) = 36 image tokens.
    Template: ``USER: <image>\\n{p} ASSISTANT:`` (LLaVA-1.6 vicuna), ``<s>`` prepended.
    Non-square inputs give other counts (anyres); run it at one fixed resolution.
``qwen2_vl`` -- ``Qwen2VLForConditionalGeneration`` (vision depth 2, embed_dim 32,
    patch 8, temporal patch 2, ``spatial_merge_size`` 2; text M-RoPE ``mrope_section``
    ``[2, 3, 3]`` = head_dim/2) + ``Qwen2VLProcessor`` / ``Qwen2VLImageProcessor``
    (``min_pixels`` 60², ``max_pixels`` 6000, so every square image becomes 64×64 → 8×8
    patches → 16 image tokens) + ``Qwen2VLVideoProcessor``. Template:
    ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n``
    ``<|vision_start|><|image_pad|><|vision_end|>{p}<|im_end|>\\n<|im_start|>assistant\\n``;
    no BOS. Image token ``<|image_pad|>`` (``config.image_token_id``; also
    ``vision_start_token_id`` / ``vision_end_token_id``).
``qwen2_5_vl`` -- the same with ``Qwen2_5_VLForConditionalGeneration`` /
    ``Qwen2_5_VLProcessor`` (vision hidden 32, window attention with ``window_size`` 32,
    full attention in block 1); 16 image tokens at 64×64.
``internvl`` -- ``InternVLForConditionalGeneration`` (``InternVLVisionConfig`` 64 px,
    patch 8 → 8×8 patches, CLS dropped, pixel shuffle 0.5 → 16 tokens; ``Qwen2Config``
    decoder) + ``InternVLProcessor`` / ``GotOcr2ImageProcessor`` (64×64,
    ``crop_to_patches`` off, ``max_patches`` 1) with ``image_seq_length`` 16. Template:
    ``<|im_start|>system\\nYou are InternVL, a helpful assistant.<|im_end|>\\n``
    ``<|im_start|>user\\n<IMG_CONTEXT>\\n{p}<|im_end|>\\n<|im_start|>assistant\\n``; the
    processor expands ``<IMG_CONTEXT>`` to ``<img>`` + 16 × ``<IMG_CONTEXT>`` + ``</img>``.
    Image token ``<IMG_CONTEXT>``; no BOS.
``gemma3`` -- ``Gemma3ForConditionalGeneration`` (SigLIP 64 px, patch 8, 8×8 patches pooled to
    4×4 = 16 tokens; ``Gemma3TextConfig`` with layer 0 sliding (window 12, shorter than the
    40-token sequence) and layer 1 full, ``query_pre_attn_scalar`` 24) + ``Gemma3Processor`` /
    ``Gemma3ImageProcessor`` (64×64, pan-and-scan off). Template:
    ``<bos><start_of_turn>user\n<start_of_image>{p}<end_of_turn>\n<start_of_turn>model\n``; the
    processor expands ``<start_of_image>`` to ``<start_of_image>`` + 16 × ``<image_soft_token>``
    + ``<end_of_image>``; ``token_type_ids`` mark the image block (bidirectional).
``paligemma`` -- ``PaliGemmaForConditionalGeneration`` (SigLIP 32 px, patch 8 → 16 tokens; a
    ``Gemma2Config`` decoder as in PaliGemma 2: attention soft-cap 0.05 with scale 1, final
    soft-cap 3, layer 0 sliding with window 12) + ``PaliGemmaProcessor`` /
    ``SiglipImageProcessor`` (32×32). Template ``<image>{p}``; the processor makes it 16 ×
    ``<image>`` + ``<bos>`` + ``{p}`` + ``\n`` and the whole prompt is one bidirectional prefix.

The families added after the paper's (``llava_onevision``, ``vipllava``, ``llava_next_video``,
``video_llava``, ``qwen3_vl``, ``qwen3_vl_moe``, ``glm4v``, ``glm4v_moe``, ``glm46v``,
``mistral3``, ``lighton_ocr``, ``aya_vision``, ``cohere2_vision``, ``idefics3``, ``smolvlm``, ``deepseek_vl``,
``video_llama_3``, ``paddleocr_vl``, ``ovis2``, ``qianfan_ocr``, ``exaone4_5``, ``cohere_compass``)
describe their tiny model (towers, token count, template) in their ``_build_*`` docstrings;
not every decoder is under ``model.language_model`` (Idefics3, SmolVLM: ``model.text_model``), the
record's ``decoder`` path says where.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hearlib.families.registry import FAMILIES as REGISTRY
from hearlib.organism.model import CHAT_TEMPLATE
from hearlib.prompts import PAPER_PROMPT  # noqa: F401  (re-exported)

FAMILIES = tuple(REGISTRY)              # the model_type of every registered family

# Decoder shared by every family: GQA (4 query heads, 2 key/value heads), head_dim 16.
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
HEAD_DIM = 16

# image tokens that one square image of any size produces, per family
NUM_IMAGE_TOKENS = {model_type: f.tiny.image_tokens for model_type, f in REGISTRY.items()}
# the size (w, h) the image processor brings a square input to
PROCESSED_SIZE = {model_type: f.tiny.processed_size for model_type, f in REGISTRY.items()}

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_WORDS = """
what is the main object in image please answer with a single word identify primary subject this
picture specify key item using one only give me stated provide term for principal depicted here
focus of photo name element limiting your to which best describes using that stands out most offer
from restricted color where kind thing are you helpful assistant internvl user assistant system
dog cat car boat bus truck bird horse sheep cow elephant bear zebra giraffe person bicycle airplane
train chair couch bed table cup bottle apple banana pizza cake clock vase book laptop phone tv
red green blue yellow black white orange purple brown gray pink left right top bottom center middle
animal vehicle food furniture yes no a an the
""".split()
_PUNCT = list(".,?!:;'\u2019-\"()")

# family -> (special tokens in id order, tokenizer attributes, bos)
_SPECIALS = {
    "llava": (["<pad>", "<unk>", "<s>", "</s>", "<image>"], {"image_token": "<image>"}, "<s>"),
    "qwen": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"],
             {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}, None),
    "internvl": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
                  "<video>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"],
                 {"start_image_token": "<img>", "end_image_token": "</img>",
                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}, None),
    "gemma3": (["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                "<end_of_image>", "<image_soft_token>"],
               {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>"}, None),
    "paligemma": (["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], {"image_token": "<image>"}, None),
    "llava_video": (["<pad>", "<unk>", "<s>", "</s>", "<image>", "<video>"],
                    {"image_token": "<image>", "video_token": "<video>"}, "<s>"),
    "glm4v": (["<|endoftext|>", "<unk>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
               "<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>",
               "<|video|>"], {"image_token": "<|image|>", "video_token": "<|video|>"}, None),
    "cohere": (["<PAD>", "<unk>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                "<|CHATBOT_TOKEN|>", "<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>",
                "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL"],
               {"image_token": "<|IMG_PATCH|>", "boi_token": "<|START_OF_IMG|>", "eoi_token": "<|END_OF_IMG|>",
                "img_line_break_token": "<|IMG_LINE_BREAK|>"}, "<BOS_TOKEN>"),
    "idefics3": (["<|endoftext|>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                  "<image>", "<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)],
                 {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                  "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}, None),
    "lighton_ocr": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_pad|>",
                     "<|vision_end|>"],
                    {"image_token": "<|image_pad|>", "image_break_token": "<|vision_pad|>",
                     "image_end_token": "<|vision_end|>"}, None),
    "deepseek_vl": (["<pad>", "<unk>", "<s>", "</s>", "<image_placeholder>"], {"image_token": "<image_placeholder>"},
                    "<s>"),
    "ovis2": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<IMG_ATOM>", "<IMG_START>",
               "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"], {"image_token": "<IMG_ATOM>"}, None),
    "qianfan_ocr": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
                     "<image>"],
                    {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"},
                    None),
    "cohere_compass": (["<PAD>", "<unk>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>",
                        "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|VISION_START|>", "<|VISION_END|>", "<|IMAGE_PAD|>",
                        "<|VIDEO_PAD|>"],
                       {"image_token": "<|IMAGE_PAD|>", "video_token": "<|VIDEO_PAD|>"}, "<BOS_TOKEN>"),
    "onevision": (["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                  {"image_token": "<image>", "video_token": "<video>"}, None),
    "mistral3": (["<pad>", "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"],
                 {"image_token": "[IMG]"}, "<s>"),
}
# model_type -> key of _SPECIALS where it is not the model_type itself
_TOKENIZER_OF = {"llava_onevision": "onevision", "llava_next": "llava", "vipllava": "llava",
                 "llava_next_video": "llava_video", "video_llava": "llava_video", "glm4v_moe": "glm4v", "glm46v": "glm4v",
                 "aya_vision": "cohere", "cohere2_vision": "cohere", "video_llama_3": "qwen",
                 "paddleocr_vl": "qwen", "exaone4_5": "qwen", "smolvlm": "idefics3"}
# words a family's template needs beyond the shared vocabulary (appended last: other ids unchanged)
_EXTRA_WORDS = {"gemma3": ["model"]}

LLAVA_TEMPLATE = CHAT_TEMPLATE          # the organism's LLaVA-1.5 template


def _im_template(system: str, image: str) -> str:
    """ChatML template (Qwen2-VL, InternVL2.5): default system turn, images before the text."""
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\n" + system + "<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image + "{% endif %}{% endfor %}"
        "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "<|im_end|>\n{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


QWEN_TEMPLATE = _im_template("You are a helpful assistant.", "<|vision_start|><|image_pad|><|vision_end|>")
QIANFAN_TEMPLATE = _im_template("You are a helpful assistant.", "<image>\n")
OVIS2_TEMPLATE = _im_template("You are a helpful assistant.", "<image>\n")
INTERNVL_TEMPLATE = _im_template("You are InternVL, a helpful assistant.", "<IMG_CONTEXT>\n")
LIGHTON_TEMPLATE = _im_template("You are a helpful assistant.", "<|image_pad|>")
ONEVISION_TEMPLATE = _im_template("You are a helpful assistant.", "<image>\n")
# GLM-4.1V: [gMASK]<sop>, role tags, the image between <|begin_of_image|> and <|end_of_image|>
GLM4V_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Aya Vision / Command A Vision: Cohere turns; the tokenizer prepends <BOS_TOKEN>
COHERE_TEMPLATE = (
    "{% for message in messages %}<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ image_placeholder }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|END_OF_TURN_TOKEN|>{% endfor %}"
    "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)
# Idefics3 (as SmolVLM's): "<|im_start|>User:<image>{p}<end_of_utterance>\nAssistant:"
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
# DeepSeek-VL: "User: <image_placeholder>{p}\n\nAssistant:" after <s> (which the tokenizer prepends)
DEEPSEEK_VL_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image_placeholder>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
# Mistral 3 (Pixtral): [INST] image then prompt [/INST]; the tokenizer prepends <s>
MISTRAL3_TEMPLATE = (
    "{% for message in messages %}[INST]"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}[IMG]{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "[/INST]{% endfor %}"
)


def _vocabulary() -> list[str]:
    words = list(_WORDS)
    try:  # the project's prompts and scene words, when available
        from hearlib.organism import model as organism
        for prompts, _ in organism.QUESTIONS.values():
            for p in prompts:
                words += p.lower().replace("?", " ").replace(".", " ").replace(",", " ").split()
        words += organism.answer_vocabulary()
    except Exception:  # noqa: BLE001 - the fixed list above is enough
        pass
    words += [w.capitalize() for w in list(words)] + ["USER", "ASSISTANT", "InternVL"]
    seen: dict[str, None] = {}
    for w in words + _PUNCT:
        seen.setdefault(w, None)
    return list(seen)


def build_tokenizer(family: str):
    """Word-level ``PreTrainedTokenizerFast`` with the family's special tokens and attributes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    key = _TOKENIZER_OF.get(family) or ("qwen" if family.startswith("qwen") else "llava" if family.startswith("llava")
                                        else family if family in _SPECIALS else "internvl")
    specials, attributes, bos = _SPECIALS[key]
    vocab = {t: i for i, t in enumerate(specials)}
    for w in _vocabulary() + _EXTRA_WORDS.get(key, []):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, vocab[bos])])
    if key in ("llava", "llava_video", "mistral3", "deepseek_vl"):
        kw = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", padding_side="left")
    elif key in ("gemma3", "paligemma"):
        kw = dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>", padding_side="left")
    elif key in ("cohere", "cohere_compass"):
        kw = dict(bos_token="<BOS_TOKEN>", eos_token="<|END_OF_TURN_TOKEN|>", unk_token="<unk>", pad_token="<PAD>",
                  padding_side="left")
    elif key == "idefics3":
        kw = dict(bos_token="<|im_start|>", eos_token="<end_of_utterance>", unk_token="<unk>",
                  pad_token="<|endoftext|>", padding_side="left")
    elif key == "glm4v":
        kw = dict(eos_token="<|endoftext|>", unk_token="<unk>", pad_token="<|endoftext|>", padding_side="left")
    else:
        kw = dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>", padding_side="left")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=dict(attributes),
                                   model_max_length=512, **kw)
    others = [t for t in specials if t not in set(attributes.values()) | set(kw.values())]
    if others:
        fast.add_special_tokens({"additional_special_tokens": others}, replace_extra_special_tokens=False)
    assert len(fast) == len(vocab), (len(fast), len(vocab))
    return fast


def _text_kwargs(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), head_dim=HEAD_DIM, max_position_embeddings=512, rms_norm_eps=1e-6,
                tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT)


def _clip_vision(image_size: int):
    from transformers import CLIPVisionConfig
    return CLIPVisionConfig(image_size=image_size, patch_size=8, num_channels=3, hidden_size=32,
                            intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            projection_dim=32, hidden_act="quick_gelu")


def _clip_image_processor_kwargs(size: int) -> dict:
    return dict(do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
                crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255,
                do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)


def _build_llava(tokenizer, next_: bool):
    import transformers as tf
    from transformers import LlamaConfig
    text = LlamaConfig(**_text_kwargs(tokenizer))
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    common = dict(vision_config=_clip_vision(32), text_config=text, image_token_id=image_token_id,
                  projector_hidden_act="gelu", vision_feature_select_strategy="default",
                  vision_feature_layer=-1, tie_word_embeddings=False)
    proc_kw = dict(tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=LLAVA_TEMPLATE, image_token="<image>", num_additional_image_tokens=1)
    if not next_:
        config = tf.LlavaConfig(image_seq_length=16, **common)
        processor = tf.LlavaProcessor(image_processor=tf.CLIPImageProcessor(**_clip_image_processor_kwargs(32)),
                                      **proc_kw)
        return config, tf.LlavaForConditionalGeneration, processor
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = tf.LlavaNextConfig(image_grid_pinpoints=pinpoints, image_seq_length=16, **common)
    image_processor = tf.LlavaNextImageProcessor(image_grid_pinpoints=pinpoints,
                                                 **_clip_image_processor_kwargs(32))
    processor = tf.LlavaNextProcessor(image_processor=image_processor, **proc_kw)
    return config, tf.LlavaNextForConditionalGeneration, processor


def _build_qwen3(tokenizer, moe: bool):
    """Qwen3-VL (dense or MoE decoder): vision depth 2, patch 8, 2 × 2 merge, deepstack features of
    vision block 0 added to decoder layer 0's image positions; interleaved M-RoPE [2, 3, 3].
    The Qwen2-VL image processor at patch 8: square inputs -> 64 × 64 -> 16 image tokens."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8, temporal_patch_size=2,
                  spatial_merge_size=2, out_hidden_size=TEXT["hidden_size"], num_position_embeddings=64,
                  deepstack_visual_indexes=[0])
    config_cls = tf.Qwen3VLMoeConfig if moe else tf.Qwen3VLConfig
    config = config_cls(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    pixels = dict(min_pixels=60 * 60, max_pixels=6000, patch_size=8, temporal_patch_size=2, merge_size=2,
                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    image_processor = tf.Qwen2VLImageProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    video_processor = tf.Qwen3VLVideoProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    processor = tf.Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=QWEN_TEMPLATE)
    model_cls = tf.Qwen3VLMoeForConditionalGeneration if moe else tf.Qwen3VLForConditionalGeneration
    return config, model_cls, processor


def _build_glm4v(tokenizer, variant: str):
    """GLM-4.1V (``glm4v``), GLM-4.5V (``glm4v_moe``, MoE decoder), GLM-4.6V (``glm46v``): vision depth 2, patch 8, 2 × 2 merge; a GLM-4 decoder with
    partial rotary (half of head_dim) and M-RoPE [1, 1, 2]; square inputs -> 64 × 64 -> 16 image tokens."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image|>"), ("video_token_id", "<|video|>"),
        ("image_start_token_id", "<|begin_of_image|>"), ("image_end_token_id", "<|end_of_image|>"),
        ("video_start_token_id", "<|begin_of_video|>"), ("video_end_token_id", "<|end_of_video|>"))}
    text = dict(_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [1, 1, 2], "partial_rotary_factor": 0.5})
    text.pop("head_dim")
    if variant == "glm4v_moe":
        text.update(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                    first_k_dense_replace=1)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8, image_size=64,
                  temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=TEXT["hidden_size"])
    prefix = {"glm4v": "Glm4v", "glm4v_moe": "Glm4vMoe", "glm46v": "Glm46V"}[variant]
    config = getattr(tf, f"{prefix}Config")(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    pixels = dict(patch_size=8, temporal_patch_size=2, merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    # GLM's smart_resize counts pixels over two frames (temporal patch 2): square inputs -> 64 × 64
    size = {"shortest_edge": 2 * 60 * 60, "longest_edge": 2 * 6000}
    processors = "Glm46V" if variant == "glm46v" else "Glm4v"
    image_processor = getattr(tf, f"{processors}ImageProcessor")(size=size, **pixels)
    video_processor = getattr(tf, f"{processors}VideoProcessor")(size=size, **pixels)
    processor = getattr(tf, f"{processors}Processor")(image_processor=image_processor, tokenizer=tokenizer,
                                                       video_processor=video_processor, chat_template=GLM4V_TEMPLATE)
    return config, getattr(tf, f"{prefix}ForConditionalGeneration"), processor


def _build_cohere_vision(tokenizer, command_a: bool):
    """Aya Vision / Command A Vision: SigLIP 64 px / patch 8 (8 × 8 patches) pixel-shuffled 2 × 2 to
    4 × 4 = 16 tokens per tile, one tile at the tiny size; a Cohere 2 decoder whose layer 0 has a
    sliding window (12) shorter than the sequence. Aya writes <|START_OF_IMG|> TILE_GLOBAL + tokens +
    <|END_OF_IMG|>; Command A Vision <|START_OF_IMG|> + tokens + <|IMG_LINE_BREAK|> per tile + <|END_OF_IMG|>."""
    import transformers as tf
    text = tf.Cohere2Config(**{k: v for k, v in _text_kwargs(tokenizer).items() if k != "rms_norm_eps"},
                            sliding_window=12, layer_types=["sliding_attention", "full_attention"],
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    vision = _siglip_vision(64, vision_use_head=False)
    image = dict(size={"height": 64, "width": 64}, crop_to_patches=False, min_patches=1, max_patches=1, resample=3,
                 image_mean=[0.5] * 3, image_std=[0.5] * 3)
    if command_a:
        config = tf.Cohere2VisionConfig(vision_config=vision, text_config=text, downsample_factor=2,
                                        image_token_id=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
                                        alignment_intermediate_size=64, tie_word_embeddings=False)
        processor = tf.Cohere2VisionProcessor(image_processor=tf.Cohere2VisionImageProcessor(patch_size=4, **image),
                                              tokenizer=tokenizer,
                                              chat_template=COHERE_TEMPLATE.replace("{{ image_placeholder }}",
                                                                                    "<|IMG_PATCH|>"))
        return config, tf.Cohere2VisionForConditionalGeneration, processor
    config = tf.AyaVisionConfig(vision_config=vision, text_config=text, downsample_factor=2,
                                vision_feature_select_strategy="full", vision_feature_layer=-1,
                                image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
                                alignment_intermediate_size=64, tie_word_embeddings=False)
    processor = tf.AyaVisionProcessor(image_processor=tf.GotOcr2ImageProcessor(**image), tokenizer=tokenizer,
                                      patch_size=8, img_size=64, downsample_factor=2,
                                      chat_template=COHERE_TEMPLATE.replace("{{ image_placeholder }}", "<image>"))
    return config, tf.AyaVisionForConditionalGeneration, processor


def _build_idefics3(tokenizer):
    """Idefics3: SigLIP-like tower 64 px / patch 8 (8 × 8 patches), pixel shuffle 2 -> 16
    <image> tokens between <fake_token_around_image><global-img> and <fake_token_around_image>;
    a Llama decoder. Image splitting is off (one global image, longest edge 64)."""
    import transformers as tf
    vision = tf.Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=2, image_size=64, patch_size=8)
    text = tf.LlamaConfig(**_text_kwargs(tokenizer))
    config = tf.Idefics3Config(vision_config=vision, text_config=text, scale_factor=2,
                               image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    image = dict(do_resize=True, size={"longest_edge": 64}, max_image_size={"longest_edge": 64},
                 do_image_splitting=False, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3)
    processor = tf.Idefics3Processor(image_processor=tf.Idefics3ImageProcessor(**image), tokenizer=tokenizer,
                                     image_seq_len=16, chat_template=IDEFICS3_TEMPLATE)
    return config, tf.Idefics3ForConditionalGeneration, processor


def _build_smolvlm(tokenizer):
    """SmolVLM: Idefics3's tiny geometry with SmolVLM's own classes (vision tower 64 px / patch 8,
    pixel shuffle 2 -> 16 <image> tokens, a Llama decoder under model.text_model, image splitting
    off); SmolVLMProcessor also takes a video processor and needs the num2words package."""
    import transformers as tf
    vision = tf.SmolVLMVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, image_size=64, patch_size=8)
    text = tf.LlamaConfig(**_text_kwargs(tokenizer))
    config = tf.SmolVLMConfig(vision_config=vision, text_config=text, scale_factor=2,
                              image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    pixels = dict(do_resize=True, size={"longest_edge": 64}, max_image_size={"longest_edge": 64},
                  image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3)
    processor = tf.SmolVLMProcessor(image_processor=tf.SmolVLMImageProcessor(do_image_splitting=False, **pixels),
                                    video_processor=tf.SmolVLMVideoProcessor(**pixels), tokenizer=tokenizer,
                                    image_seq_len=16, chat_template=IDEFICS3_TEMPLATE)
    return config, tf.SmolVLMForConditionalGeneration, processor


def _build_deepseek_vl(tokenizer):
    """DeepSeek-VL: SigLIP 64 px / patch 8 (no class token) -> 8 × 8 = 64 <image_placeholder> tokens,
    an MLP aligner, a Llama decoder; the image processor pads to a square, then resizes to 64 × 64."""
    import transformers as tf
    config = tf.DeepseekVLConfig(vision_config=_siglip_vision(64, vision_use_head=False),
                                 text_config=tf.LlamaConfig(**_text_kwargs(tokenizer)),
                                 image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
                                 tie_word_embeddings=False)
    image_processor = tf.DeepseekVLImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                                                  image_std=[0.5] * 3)
    processor = tf.DeepseekVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                       chat_template=DEEPSEEK_VL_TEMPLATE, num_image_tokens=64)
    return config, tf.DeepseekVLForConditionalGeneration, processor


def _build_video_llama_3(tokenizer):
    """VideoLLaMA 3: a SigLIP-like tower with 2D RoPE at the image's own resolution (patch 8, no merge
    for images), a Qwen2 decoder; min/max pixels 4000/4100 bring any square input to 64 × 64 ->
    8 × 8 = 64 image tokens."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"))}
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8)
    text = tf.Qwen2Config(**_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.VideoLlama3Config(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    pixels = dict(size={"shortest_edge": 4000, "longest_edge": 4100}, patch_size=8, merge_size=1,
                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = tf.VideoLlama3Processor(image_processor=tf.VideoLlama3ImageProcessor(**pixels),
                                        video_processor=tf.VideoLlama3VideoProcessor(**pixels), tokenizer=tokenizer,
                                        chat_template=QWEN_TEMPLATE)
    return config, tf.VideoLlama3ForConditionalGeneration, processor


def _build_paddleocr_vl(tokenizer):
    """PaddleOCR-VL: a NaViT-style SigLIP tower (patch 8, 2 × 2 merge, no temporal patches), an ERNIE-4.5
    style decoder with M-RoPE [2, 3, 3]; min/max pixels as Qwen2-VL: square inputs -> 64 × 64 -> 16 tokens."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 3, 3]})
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=8, spatial_merge_size=2)
    config = tf.PaddleOCRVLConfig(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    image_processor = tf.PaddleOCRVLImageProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, patch_size=8,
                                                   merge_size=2, temporal_patch_size=1, image_mean=CLIP_MEAN,
                                                   image_std=CLIP_STD)
    processor = tf.PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=QWEN_TEMPLATE)
    return config, tf.PaddleOCRVLForConditionalGeneration, processor


def _build_ovis2(tokenizer):
    """Ovis2: a SigLIP-like tower 64 px / patch 8, hidden stride 2 (8 × 8 patches -> 4 × 4), whose
    "visual tokenizer" gives each of the 16 tokens a softmax over a 64-entry visual embedding table; the
    processor expands <image> to <IMG_START> + 16 × <IMG_ATOM> + <IMG_GRID> + <IMG_END> (one view); a
    Qwen2 decoder. The indicator tokens get fixed table rows, not image features."""
    import transformers as tf
    indicators = ["<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=8, vocab_size=64, hidden_stride=2, num_visual_indicator_tokens=5)
    text = tf.Qwen2Config(**_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.Ovis2Config(vision_config=vision, text_config=text, hidden_size=TEXT["hidden_size"],
                            vocab_size=len(tokenizer), image_token_id=tokenizer.convert_tokens_to_ids("<IMG_ATOM>"),
                            visual_indicator_token_ids=tokenizer.convert_tokens_to_ids(indicators),
                            tie_word_embeddings=False)
    image_processor = tf.Ovis2ImageProcessor(size={"height": 64, "width": 64}, crop_to_patches=False,
                                             image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = tf.Ovis2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16,
                                  chat_template=OVIS2_TEMPLATE)
    return config, tf.Ovis2ForConditionalGeneration, processor


def _build_qianfan_ocr(tokenizer):
    """Qianfan-OCR: InternVL's layout (InternViT-style tower 64 px / patch 8, pixel shuffle 0.5 -> 16
    <IMG_CONTEXT> tokens between <img> and </img>, GotOcr2 image processor at 64 × 64, one tile) with a
    Qwen3 decoder; the template's <image> placeholder is expanded by the processor."""
    import transformers as tf
    vision = tf.QianfanOCRVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=[64, 64], patch_size=[8, 8],
                                       use_mean_pooling=False, norm_type="layer_norm")
    text = tf.Qwen3Config(**_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.QianfanOCRConfig(vision_config=vision, text_config=text,
                                 image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=16,
                                 downsample_ratio=0.5, vision_feature_layer=-1,
                                 vision_feature_select_strategy="default", tie_word_embeddings=False)
    image_processor = tf.GotOcr2ImageProcessor(
        size={"height": 64, "width": 64}, crop_to_patches=False, min_patches=1, max_patches=1, resample=3,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = tf.QianfanOCRProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16,
                                       chat_template=QIANFAN_TEMPLATE)
    return config, tf.QianfanOCRForConditionalGeneration, processor


def _build_exaone4_5(tokenizer):
    """EXAONE 4.5: a Qwen2.5-VL-style tower (window attention, full attention in block 1, patch 8, 2 × 2
    merge; the Qwen2-VL image processor: square inputs -> 64 × 64 -> 16 tokens) and an EXAONE 4 decoder
    whose layer 0 has a sliding window (12) shorter than the sequence."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"))}
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, num_key_value_heads=2, patch_size=8,
                  temporal_patch_size=2, spatial_merge_size=2, window_size=32, out_hidden_size=TEXT["hidden_size"],
                  fullatt_block_indexes=[1])
    text = tf.Exaone4Config(**_text_kwargs(tokenizer), sliding_window=12,
                            layer_types=["sliding_attention", "full_attention"],
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.Exaone4_5_Config(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    pixels = dict(min_pixels=60 * 60, max_pixels=6000, patch_size=8, temporal_patch_size=2, merge_size=2,
                  image_mean=CLIP_MEAN, image_std=CLIP_STD)
    image_processor = tf.Qwen2VLImageProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    video_processor = tf.Qwen2VLVideoProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    processor = tf.Exaone4_5_Processor(image_processor=image_processor, tokenizer=tokenizer,
                                       video_processor=video_processor, chat_template=QWEN_TEMPLATE)
    return config, tf.Exaone4_5_ForConditionalGeneration, processor


def _build_cohere_compass(tokenizer):
    """Cohere Compass: a Qwen3-VL-style tower (patch 8, 2 × 2 merge, DeepStack from block 0), a Cohere
    decoder with M-RoPE per layer type, layer 0 sliding (window 12 < the sequence), and a wrapper that
    scales the logits by ``text_config.logit_scale`` (0.5 here, so the engine must apply it too)."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|IMAGE_PAD|>"), ("video_token_id", "<|VIDEO_PAD|>"),
        ("vision_start_token_id", "<|VISION_START|>"), ("vision_end_token_id", "<|VISION_END|>"))}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    text = {k: v for k, v in _text_kwargs(tokenizer).items() if k not in ("rms_norm_eps", "head_dim")}
    text.update(logit_scale=0.5, sliding_window=12, layer_types=["sliding_attention", "full_attention"],
                rope_parameters={"sliding_attention": dict(rope), "full_attention": dict(rope)})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8, temporal_patch_size=2,
                  spatial_merge_size=2, out_hidden_size=TEXT["hidden_size"], num_position_embeddings=64,
                  deepstack_visual_indexes=[0])
    config = tf.CohereCompassConfig(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
    pixels = dict(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, patch_size=8, temporal_patch_size=2,
                  merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = tf.CohereCompassProcessor(image_processor=tf.CohereCompassImageProcessor(**pixels),
                                          video_processor=tf.CohereCompassVideoProcessor(**pixels),
                                          tokenizer=tokenizer,
                                          chat_template=COHERE_TEMPLATE.replace(
                                              "{{ image_placeholder }}", "<|VISION_START|><|IMAGE_PAD|><|VISION_END|>"))
    return config, tf.CohereCompassForConditionalGeneration, processor


def _build_qwen(tokenizer, v25: bool):
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 3, 3]})
    text.pop("head_dim")  # head_dim = hidden / heads = 16 in both Qwen decoders
    hidden = TEXT["hidden_size"]
    if v25:
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                      temporal_patch_size=2, spatial_merge_size=2, window_size=32, out_hidden_size=hidden,
                      fullatt_block_indexes=[1], hidden_act="silu")
        config = tf.Qwen2_5_VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
        model_cls, proc_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
    else:
        vision = dict(depth=2, embed_dim=32, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=8,
                      temporal_patch_size=2, spatial_merge_size=2, hidden_act="quick_gelu")
        config = tf.Qwen2VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids)
        model_cls, proc_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    # square inputs of any size -> 64×64 -> 8×8 patches of 8 px -> 16 merged image tokens
    pixels = dict(min_pixels=60 * 60, max_pixels=6000, patch_size=8, temporal_patch_size=2, merge_size=2,
                  image_mean=CLIP_MEAN, image_std=CLIP_STD)
    image_processor = tf.Qwen2VLImageProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    video_processor = tf.Qwen2VLVideoProcessor(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, **pixels)
    processor = proc_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                         chat_template=QWEN_TEMPLATE)
    return config, model_cls, processor


def _build_internvl(tokenizer, decoder: str = "qwen2"):
    """InternVL with a Qwen2 decoder (InternVL2.5 / InternVL3, whose Qwen2.5 is model_type qwen2) or,
    with ``decoder="qwen3"``, a Qwen3 decoder (query/key norms; InternVL3.5)."""
    import transformers as tf
    vision = tf.InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=[64, 64], patch_size=[8, 8],
                                     use_mean_pooling=False, norm_type="layer_norm")
    text_class = {"qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config}[decoder]
    text = text_class(**_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.InternVLConfig(vision_config=vision, text_config=text,
                               image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                               image_seq_length=16, downsample_ratio=0.5, projector_hidden_act="gelu",
                               vision_feature_layer=-1, vision_feature_select_strategy="default",
                               tie_word_embeddings=False)
    image_processor = tf.GotOcr2ImageProcessor(
        size={"height": 64, "width": 64}, crop_to_patches=False, min_patches=1, max_patches=1,
        do_resize=True, resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)
    video_processor = tf.InternVLVideoProcessor(size={"height": 64, "width": 64}, image_mean=[0.485, 0.456, 0.406],
                                                image_std=[0.229, 0.224, 0.225])
    processor = tf.InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     video_processor=video_processor, image_seq_length=16,
                                     chat_template=INTERNVL_TEMPLATE)
    return config, tf.InternVLForConditionalGeneration, processor


# Gemma 3's template (as the hub's, without system-turn handling): <bos>, turns, <start_of_image>
# where the image goes, which the processor expands to <start_of_image> + image tokens + <end_of_image>.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# PaliGemma has no chat turns: "<image>" then the prompt; the processor inserts <bos> after the
# image tokens and "\n" at the end.
PALIGEMMA_TEMPLATE = (
    "{% for message in messages %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endfor %}"
)


def _siglip_vision(image_size: int, **extra):
    from transformers import SiglipVisionConfig
    return SiglipVisionConfig(image_size=image_size, patch_size=8, num_channels=3, hidden_size=32,
                              intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **extra)


def _siglip_image_processor(size: int, **extra):
    from transformers import SiglipImageProcessor
    return SiglipImageProcessor(do_resize=True, size={"height": size, "width": size}, resample=3, do_rescale=True,
                                rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                do_convert_rgb=True, **extra)


def _build_gemma3(tokenizer):
    """Gemma 3: SigLIP 64 px / patch 8 (8 × 8 patches) average-pooled to 4 × 4 = 16 tokens; the
    decoder's layer 0 is a sliding-window layer with a window (12) shorter than the sequence,
    layer 1 full attention; query_pre_attn_scalar 24 (scale 24^-1/2, not head_dim^-1/2)."""
    import transformers as tf
    ids = {name: tokenizer.convert_tokens_to_ids(t) for name, t in (
        ("image_token_index", "<image_soft_token>"), ("boi_token_index", "<start_of_image>"),
        ("eoi_token_index", "<end_of_image>"))}
    text = tf.Gemma3TextConfig(**_text_kwargs(tokenizer), query_pre_attn_scalar=24, sliding_window=12,
                               layer_types=["sliding_attention", "full_attention"])
    config = tf.Gemma3Config(text_config=text, vision_config=_siglip_vision(64, vision_use_head=False),
                             mm_tokens_per_image=16, tie_word_embeddings=False, **ids)
    image_processor = tf.Gemma3ImageProcessor(do_resize=True, size={"height": 64, "width": 64}, resample=2,
                                              do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3, do_convert_rgb=True,
                                              do_pan_and_scan=False)
    processor = tf.Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16,
                                   chat_template=GEMMA3_TEMPLATE)
    return config, tf.Gemma3ForConditionalGeneration, processor


def _build_paligemma(tokenizer):
    """PaliGemma 2: SigLIP 32 px / patch 8 → 16 image tokens; a Gemma 2 decoder (attention and
    final-logit soft-capping, a sliding-window layer with a window shorter than the sequence);
    the whole prompt prefix (image, <bos>, prompt) attends bidirectionally (a prefix-LM)."""
    import transformers as tf
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    # the processor adds PaliGemma's <loc####>/<seg###> tokens to the tokenizer: build it first
    processor = tf.PaliGemmaProcessor(image_processor=_siglip_image_processor(32, image_seq_length=16),
                                      tokenizer=tokenizer, chat_template=PALIGEMMA_TEMPLATE)
    text = tf.Gemma2Config(**_text_kwargs(processor.tokenizer), query_pre_attn_scalar=1, sliding_window=12,
                           layer_types=["sliding_attention", "full_attention"], attn_logit_softcapping=0.05,
                           final_logit_softcapping=3.0)
    config = tf.PaliGemmaConfig(vision_config=_siglip_vision(32, projection_dim=TEXT["hidden_size"]),
                                text_config=text, image_token_index=image_token,
                                projection_dim=TEXT["hidden_size"], hidden_size=TEXT["hidden_size"],
                                tie_word_embeddings=False)
    return config, tf.PaliGemmaForConditionalGeneration, processor


def _build_llava_variant(model_type: str, tokenizer):
    """LLaVA-1.5's towers (CLIP 32 px, patch 8, CLS dropped; Llama decoder) under another LLaVA wrapper:
    ViP-LLaVA (features of two vision layers), LLaVA-NeXT-Video (anyres as LLaVA-NeXT), Video-LLaVA
    (separate image and video towers)."""
    import transformers as tf
    text = tf.LlamaConfig(**_text_kwargs(tokenizer))
    ids = dict(image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    clip = _clip_image_processor_kwargs(32)
    proc = dict(tokenizer=tokenizer, chat_template=LLAVA_TEMPLATE, patch_size=8)
    if model_type == "vipllava":
        config = tf.VipLlavaConfig(vision_config=_clip_vision(32), text_config=text, vision_feature_layers=[-2, -1],
                                   tie_word_embeddings=False, **ids)
        processor = tf.LlavaProcessor(image_processor=tf.CLIPImageProcessor(**clip), image_token="<image>",
                                      vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                      **proc)
        return config, tf.VipLlavaForConditionalGeneration, processor
    ids["video_token_id"] = tokenizer.convert_tokens_to_ids("<video>")
    if model_type == "llava_next_video":
        pinpoints = [[32, 32], [32, 64], [64, 32]]
        config = tf.LlavaNextVideoConfig(vision_config=_clip_vision(32), text_config=text, image_grid_pinpoints=pinpoints,
                                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                                         image_seq_length=16, video_seq_length=4, spatial_pool_stride=2,
                                         tie_word_embeddings=False, **ids)
        processor = tf.LlavaNextVideoProcessor(
            image_processor=tf.LlavaNextImageProcessor(image_grid_pinpoints=pinpoints, **clip),
            video_processor=tf.LlavaNextVideoVideoProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}),
            vision_feature_select_strategy="default", num_additional_image_tokens=1, **proc)
        return config, tf.LlavaNextVideoForConditionalGeneration, processor
    config = tf.VideoLlavaConfig(vision_config=_clip_vision(32), text_config=text, vision_feature_layer=-1,
                                 vision_feature_select_strategy="default", image_seq_length=16, video_seq_length=64,
                                 tie_word_embeddings=False, **ids)
    processor = tf.VideoLlavaProcessor(image_processor=tf.VideoLlavaImageProcessor(**clip),
                                       video_processor=tf.VideoLlavaVideoProcessor(
                                           size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                       **proc)
    return config, tf.VideoLlavaForConditionalGeneration, processor


def _build_llava_onevision(tokenizer):
    """LLaVA-OneVision: SigLIP 32 px / patch 8 (no class token, strategy "full"), a Qwen2 decoder,
    anyres pinpoints [[32, 32], [32, 64], [64, 32]]: a square input gives 16 base tokens + 4 rows of
    4 tokens and a newline = 36 image tokens."""
    import transformers as tf
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    text = tf.Qwen2Config(**_text_kwargs(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = tf.LlavaOnevisionConfig(vision_config=_siglip_vision(32, vision_use_head=False), text_config=text,
                                     image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                                     video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
                                     image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full",
                                     vision_feature_layer=-1, tie_word_embeddings=False)
    pixels = dict(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3)
    image_processor = tf.LlavaOnevisionImageProcessor(image_grid_pinpoints=pinpoints, **pixels)
    video_processor = tf.LlavaOnevisionVideoProcessor(**pixels)
    processor = tf.LlavaOnevisionProcessor(image_processor=image_processor, video_processor=video_processor,
                                           tokenizer=tokenizer, num_image_tokens=16,
                                           vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE)
    return config, tf.LlavaOnevisionForConditionalGeneration, processor


def _build_mistral3(tokenizer, lighton: bool = False):
    """Mistral 3: Pixtral vision (patch 4, longest edge 48: 12 × 12 patches; Pixtral never enlarges, so
    inputs from 48 px up give the same count), 2 × 2 patch merger -> 6 × 6 = 36 [IMG] tokens, an [IMG_BREAK] after each row and [IMG_END] after the last; a Mistral decoder."""
    import transformers as tf
    vision = tf.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    head_dim=16, patch_size=4, image_size=48)
    image_processor = tf.PixtralImageProcessor(size={"longest_edge": 48}, patch_size=4, image_mean=CLIP_MEAN,
                                               image_std=CLIP_STD)
    if lighton:   # LightOnOCR: the same Pixtral tower and merger under a Qwen3 decoder, ChatML
        text = tf.Qwen3Config(**_text_kwargs(tokenizer), sliding_window=None,
                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        config = tf.LightOnOcrConfig(vision_config=vision, text_config=text, spatial_merge_size=2,
                                     image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
                                     tie_word_embeddings=False)
        processor = tf.LightOnOcrProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                           spatial_merge_size=2, chat_template=LIGHTON_TEMPLATE)
        return config, tf.LightOnOcrForConditionalGeneration, processor
    text = tf.MistralConfig(**_text_kwargs(tokenizer), sliding_window=None)
    config = tf.Mistral3Config(vision_config=vision, text_config=text,
                               image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2,
                               vision_feature_layer=-1, tie_word_embeddings=False)
    processor = tf.PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                    spatial_merge_size=2, chat_template=MISTRAL3_TEMPLATE)
    return config, tf.Mistral3ForConditionalGeneration, processor


# The builders the records of hearlib.families.registry name: () -> (config, model class, processor).
def tiny_llava():
    return _build_llava(build_tokenizer("llava"), next_=False)


def tiny_llava_next():
    return _build_llava(build_tokenizer("llava_next"), next_=True)


def tiny_qwen2_vl():
    return _build_qwen(build_tokenizer("qwen2_vl"), v25=False)


def tiny_qwen2_5_vl():
    return _build_qwen(build_tokenizer("qwen2_5_vl"), v25=True)


def tiny_internvl():
    return _build_internvl(build_tokenizer("internvl"))


def tiny_internvl_qwen3():
    """The tiny InternVL with InternVL3.5's decoder kind (Qwen3); not a family of its own."""
    return _build_internvl(build_tokenizer("internvl"), decoder="qwen3")


def tiny_gemma3():
    return _build_gemma3(build_tokenizer("gemma3"))


def tiny_paligemma():
    return _build_paligemma(build_tokenizer("paligemma"))


def tiny_llava_onevision():
    return _build_llava_onevision(build_tokenizer("llava_onevision"))


def tiny_mistral3():
    return _build_mistral3(build_tokenizer("mistral3"))


def tiny_vipllava():
    return _build_llava_variant("vipllava", build_tokenizer("vipllava"))


def tiny_llava_next_video():
    return _build_llava_variant("llava_next_video", build_tokenizer("llava_next_video"))


def tiny_video_llava():
    return _build_llava_variant("video_llava", build_tokenizer("video_llava"))


def tiny_qwen3_vl():
    return _build_qwen3(build_tokenizer("qwen3_vl"), moe=False)


def tiny_qwen3_vl_moe():
    return _build_qwen3(build_tokenizer("qwen3_vl_moe"), moe=True)


def tiny_glm4v():
    return _build_glm4v(build_tokenizer("glm4v"), "glm4v")


def tiny_glm4v_moe():
    return _build_glm4v(build_tokenizer("glm4v_moe"), "glm4v_moe")


def tiny_glm46v():
    return _build_glm4v(build_tokenizer("glm46v"), "glm46v")


def tiny_lighton_ocr():
    return _build_mistral3(build_tokenizer("lighton_ocr"), lighton=True)


def tiny_aya_vision():
    return _build_cohere_vision(build_tokenizer("aya_vision"), command_a=False)


def tiny_cohere2_vision():
    return _build_cohere_vision(build_tokenizer("cohere2_vision"), command_a=True)


def tiny_idefics3():
    return _build_idefics3(build_tokenizer("idefics3"))


def tiny_smolvlm():
    return _build_smolvlm(build_tokenizer("smolvlm"))


def tiny_deepseek_vl():
    return _build_deepseek_vl(build_tokenizer("deepseek_vl"))


def tiny_video_llama_3():
    return _build_video_llama_3(build_tokenizer("video_llama_3"))


def tiny_paddleocr_vl():
    return _build_paddleocr_vl(build_tokenizer("paddleocr_vl"))


def tiny_ovis2():
    return _build_ovis2(build_tokenizer("ovis2"))


def tiny_qianfan_ocr():
    return _build_qianfan_ocr(build_tokenizer("qianfan_ocr"))


def tiny_exaone4_5():
    return _build_exaone4_5(build_tokenizer("exaone4_5"))


def tiny_cohere_compass():
    return _build_cohere_compass(build_tokenizer("cohere_compass"))


def build_tiny(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Build a tiny random-weight model of ``family`` (a model_type of :data:`FAMILIES`) and its
    processor into ``out_dir``, with the builder the family's record names."""
    if family not in REGISTRY:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, model_cls, processor = globals()[REGISTRY[family].tiny.builder]()
    tokenizer = processor.tokenizer
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config, key, getattr(tokenizer, key))
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # A matrix transformers initialises to zeros (Gemma 3's mm_input_projection_weight) would cut the
    # image off the decoder; draw it like the other matrices so that image tokens carry the image.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2 and not bool(param.any()):
                param.normal_(0.0, 0.02)
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.pad_token_id)
    gc.do_sample = False
    gc.max_new_tokens = 4
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------
# Random-weight models of the real geometry of published checkpoints
# ---------------------------------------------------------------------------------------
# The hub files (config, processor, tokenizer, chat template; no weights) of two paper checkpoints
# and of checkpoints of newer families, committed under tests/data/hub/ (sources and licences in
# tests/data/hub/NOTICE.md); tests/test_real_configs.py runs each at its real geometry.
REAL_HUB = Path(__file__).resolve().parent.parent / "tests" / "data" / "hub"
REAL_MODELS = {"llava-1.5-7b": "llava-1.5-7b-hf", "qwen2-vl-2b": "qwen2-vl-2b-instruct",
               "qwen2.5-vl-3b": "qwen2.5-vl-3b-instruct", "qwen3-vl-4b": "qwen3-vl-4b-instruct",
               "smolvlm-256m": "smolvlm-256m-instruct", "gemma-3-4b": "gemma-3-4b-it"}
_WEIGHT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# tokenizer files a stand-in replaces in the built model's folder (the real ones describe a tokenizer that is absent)
_STANDIN_REPLACES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
STANDIN_NOTE = "STANDIN_TOKENIZER.md"


def has_real_tokenizer(name: str, hub: Path | None = None) -> bool:
    """Whether the hub files of ``name`` include its tokenizer (``tokenizer.json``, a SentencePiece
    model or a BPE ``vocab.json``); when not, :func:`real_config_model` pairs the real config and
    processor files with :func:`standin_tokenizer`."""
    source = Path(hub or REAL_HUB) / REAL_MODELS.get(name, name)
    return any((source / f).is_file() for f in _TOKENIZER_FILES)


def standin_tokenizer(source: Path):
    """A word-level STAND-IN for a checkpoint whose tokenizer files are not under tests/data/hub
    (Gemma 3's ``tokenizer.json`` (33 MB) and ``tokenizer.model`` (4.7 MB) are in no public copy
    that could be retrieved whole). Every token the real tokenizer config lists in
    ``added_tokens_decoder`` (control, turn, image and unused tokens) keeps its real id, and the
    special ones stay special; hearlib's test words take free ids, placeholders the rest, up to the
    real size; bos/eos/pad/unk, the extra special tokens (image markers) and ``add_bos_token`` are
    the real config's. So the processor's image block, the chat template's turn markers and the
    image token id are the real ones; ordinary words are NOT split as the real tokenizer splits them."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    config = json.loads((Path(source) / "tokenizer_config.json").read_text())
    listed = {int(i): t for i, t in config["added_tokens_decoder"].items()}
    vocab = {t["content"]: i for i, t in listed.items()}
    free = (i for i in range(max(listed) + 1) if i not in listed)
    for word in _vocabulary() + ["model", "user", "fire", "hydrant", "teddy", "bear"]:   # + tests' COCO labels
        if word not in vocab:
            vocab[word] = next(free)
    for i in free:
        vocab[f"<standin_{i}>"] = i
    roles = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(config.get(k), str)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=roles.get("unk_token", "<unk>")))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    bos = roles.get("bos_token")
    if config.get("add_bos_token") and bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, vocab[bos])])
    extra = dict(config.get("extra_special_tokens") or {})
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra, padding_side="left",
                                   model_max_length=8192, **roles)
    named = set(roles.values()) | set(extra.values())
    others = [t["content"] for _, t in sorted(listed.items()) if t.get("special") and t["content"] not in named]
    fast.add_special_tokens({"additional_special_tokens": others}, replace_extra_special_tokens=False)
    return fast


def real_config(name: str, layers: int = 2, vision_layers: int = 2, intermediate_size: int | None = None,
                hub: Path | None = None):
    """The real config of ``name`` (a key of :data:`REAL_MODELS` or a folder) with the depth cut.

    Decoder depth becomes ``layers`` (``num_hidden_layers`` and, where the config has one, the
    ``layer_types`` list); vision depth becomes ``vision_layers`` (``num_hidden_layers`` of a
    CLIP/InternViT tower, ``depth`` of a Qwen2-VL one). Width, query and key/value heads,
    head size, RoPE / M-RoPE and vocabulary stay as published. ``intermediate_size`` (the
    decoder MLP width, which hearlib never touches) may be cut too, to save CPU time."""
    from transformers import AutoConfig

    source = Path(hub or REAL_HUB) / REAL_MODELS.get(name, name)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no hub files for {name!r} at {source}")
    config = AutoConfig.from_pretrained(source)        # trust_remote_code stays off
    text, vision = config.text_config, config.vision_config
    if not 1 <= layers <= text.num_hidden_layers or vision_layers < 1:
        raise ValueError(f"layers must lie in 1..{text.num_hidden_layers} and vision_layers be >= 1")
    text.num_hidden_layers = layers
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types)[:layers]
    if getattr(text, "max_window_layers", None) is not None:
        text.max_window_layers = min(text.max_window_layers, layers)
    if intermediate_size is not None:
        text.intermediate_size = intermediate_size
    depth_key = "depth" if hasattr(vision, "depth") else "num_hidden_layers"
    setattr(vision, depth_key, vision_layers)
    return config, source


def real_config_model(name: str, out_dir: Path, layers: int = 2, vision_layers: int = 2,
                      intermediate_size: int | None = None, seed: int = 0, hub: Path | None = None) -> Path:
    """Build a random-weight model of ``name``'s real geometry (depth cut, see :func:`real_config`)
    and save it in float32 beside the real processor, tokenizer and chat template files, so that
    :func:`hearlib.method.loading.load_engine` (``out_dir``) loads it like the hub checkpoint."""
    import shutil

    from transformers import AutoModelForImageTextToText
    from transformers import initialization as init

    config, source = real_config(name, layers, vision_layers, intermediate_size, hub)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    # torch's default init at construction is skipped; transformers' own init (normal(0, 0.02)
    # weights, unit norms, zero biases) then runs once over every module.
    with init.no_init_weights():
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    model.init_weights()
    with torch.no_grad():
        for key, param in model.named_parameters():
            if not bool(torch.isfinite(param).all()) or float(param.abs().max()) > 100:
                raise RuntimeError(f"parameter {key} was left uninitialised")
            # as build_tiny: a matrix transformers initialises to zeros (Gemma 3's mm_input_projection_weight)
            # would cut the image off the decoder; draw it like the other matrices
            if param.ndim >= 2 and not bool(param.any()):
                param.normal_(0.0, 0.02)
    model.save_pretrained(out_dir)
    del model
    for file in sorted(source.iterdir()):
        if file.is_file() and file.name not in _WEIGHT_FILES:
            shutil.copyfile(file, out_dir / file.name)
    if (source / "generation_config.json").is_file():
        shutil.copyfile(source / "generation_config.json", out_dir / "generation_config.json")
    if not has_real_tokenizer(name, hub):
        tokenizer = standin_tokenizer(source)
        for file in _STANDIN_REPLACES:
            (out_dir / file).unlink(missing_ok=True)
        tokenizer.save_pretrained(out_dir)
        (out_dir / STANDIN_NOTE).write_text(
            f"The tokenizer in this folder is a STAND-IN (hearlib.families.tiny.standin_tokenizer), not {name}'s: "
            "the real tokenizer files are not in tests/data/hub. Config, processor config and chat template "
            "are the real ones; special-token ids are the real tokenizer config's.\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m hearlib.families.tiny tiny --family F --out DIR [--seed S]`` or ``... list``."""
    parser = argparse.ArgumentParser(prog="python -m hearlib.families.tiny",
                                     description="Tiny random-weight models of hearlib's families, written like "
                                                 "hub checkpoints (model, processor, tokenizer, chat template).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    tiny = actions.add_parser("tiny", help="write one family's tiny model into a folder")
    tiny.add_argument("--family", required=True, choices=FAMILIES, metavar="MODEL_TYPE",
                      help=f"a registered model_type: {', '.join(FAMILIES)}")
    tiny.add_argument("--out", required=True, type=Path, help="folder to write (created; files in it are replaced)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    actions.add_parser("list", help="print the model types that have a tiny model")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(" ".join(FAMILIES))
        return 0
    print(build_tiny(args.family, args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
