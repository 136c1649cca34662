"""Tiny random-weight vision-language models of every registered family, built offline.

One builder serves every family: it starts from transformers' own config class for the model type
(``AutoConfig.for_model(model_type)`` names the text and vision sub-config classes), shrinks it by
the one table :data:`SIZES`, and applies the family's :class:`~hearlib.families.registry.TinySpec`
(special tokens, chat template, token ids, processor settings and the overrides that exercise
the engine: sliding windows, soft-caps, M-RoPE sections, mixture-of-experts decoders...), which
lives beside the family's record in its lineage file (``hearlib/families/llava.py`` ...).

:func:`build_tiny` writes a model *and* a working processor (tokenizer, image processor, chat
template) into a folder with ``save_pretrained``, so that ``AutoProcessor.from_pretrained(dir)``
and ``AutoModelForImageTextToText.from_pretrained(dir)`` load it exactly like a hub checkpoint.
Every family uses transformers' own model, processor and image-processor classes; nothing is
downloaded. The tokenizer is a word-level ``tokenizers`` model over a fixed vocabulary (the paper
prompt and the appendix prompts, role words, answer words, punctuation) after the family's
special tokens, wrapped in ``PreTrainedTokenizerFast``. Words outside the vocabulary map to
``<unk>``; white space (including ``\\n``) only splits words and is not a token.

All decoders have 2 layers, 4 query heads and 2 key/value heads (GQA), head_dim 16 (hidden 64);
all vision towers 2 layers of width 32. The record's paths say where the decoder is
(``model.language_model``, or ``model.text_model`` for Idefics3 and SmolVLM).

From the command line, ``python -m hearlib.families.tiny tiny --family gemma3 --out DIR`` writes the
same folder as ``build_tiny("gemma3", DIR)`` (``--seed``; ``python -m hearlib.families.tiny list``
prints the families); the folder then works wherever a model is asked for
(``make figures MODELS="DIR ..."``, ``hearlib run --model DIR``).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path

import torch

from hearlib.families.registry import DROP, FAMILIES as REGISTRY, TinySpec, Tokens
from hearlib.families.vocabulary import vocabulary

FAMILIES = tuple(REGISTRY)              # the model_type of every registered family

# The one shrink table. Text: every key, on every decoder (a spec's DROP leaves one out); vision and
# top level: each key the config class has. Layer-indexed lists fit the 2 layers.
SIZES = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=512, rms_norm_eps=1e-6,
                 tie_word_embeddings=False),
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, depth=2,
                   num_heads=2, num_key_value_heads=2, head_dim=16, embed_dim=32, mlp_ratio=2, projection_dim=32,
                   image_size=64, patch_size=8, temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64,
                   num_position_embeddings=64, window_size=32, fullatt_block_indexes=[1],
                   deepstack_visual_indexes=[0]),
    "config": dict(hidden_size=64, projection_dim=64),
}
HEAD_DIM = SIZES["text"]["head_dim"]

# image tokens that one square image of any size produces, per family
NUM_IMAGE_TOKENS = {model_type: f.tiny.image_tokens for model_type, f in REGISTRY.items()}
# the size (w, h) the image processor brings a square input to
PROCESSED_SIZE = {model_type: f.tiny.processed_size for model_type, f in REGISTRY.items()}

def build_tokenizer(tokens: Tokens):
    """Word-level ``PreTrainedTokenizerFast``: ``tokens.specials`` at ids 0.., then :func:`vocabulary`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tokens.specials)}
    for w in vocabulary() + list(tokens.extra_words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if tokens.lead is not None:
        from tokenizers import Regex, normalizers

        tok.normalizer = normalizers.Prepend(f"{tokens.lead} ")
        pattern = "|".join([*(re.escape(word) for word in tokens.plain), r"\w+", r"[^\w\s]+"])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Split(Regex(pattern), "isolated")])
    if tokens.prepend is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens.prepend} $A", pair=f"{tokens.prepend} $A $B",
            special_tokens=[(tokens.prepend, vocab[tokens.prepend])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=dict(tokens.named),
                                   model_max_length=512, padding_side="left", **tokens.roles)
    others = [t for t in tokens.specials
              if t not in set(tokens.named.values()) | set(tokens.roles.values()) | set(tokens.plain)]
    if others:
        fast.add_special_tokens({"additional_special_tokens": others}, replace_extra_special_tokens=False)
    if tokens.words_as_added_tokens:
        from tokenizers import AddedToken

        fast.add_tokens([AddedToken(w, single_word=True, normalized=False, special=False)
                         for w in vocab if w not in set(tokens.specials)])
    assert len(fast) == len(vocab), (len(fast), len(vocab))
    return fast


def _settings(table: dict, overrides: dict, probe=None) -> dict:
    """``table`` (only the keys ``probe`` has, when given) updated by ``overrides``, DROP-ed keys left out."""
    chosen = {k: v for k, v in table.items() if probe is None or hasattr(probe, k)}
    chosen.update({k: v for k, v in overrides.items() if k != "model_type"})
    return {k: v for k, v in chosen.items() if v is not DROP}


def tiny_processor(model_type: str, spec: TinySpec | None = None):
    """The family's processor class over the spec's image (and video) processor, tokenizer and template."""
    import transformers

    family = REGISTRY[model_type]
    spec = spec or family.tiny
    parts = {"tokenizer": build_tokenizer(spec.tokens)}
    processor_class = getattr(transformers, family.processor_class)
    if "qformer_tokenizer" in inspect.signature(processor_class.__init__).parameters:
        parts["qformer_tokenizer"] = build_tokenizer(spec.tokens)      # InstructBLIP's Q-Former reads the prompt
    for role in ("image_processor", "video_processor", "feature_extractor"):
        if getattr(spec, role) is not None:
            name, settings = getattr(spec, role)
            parts[role] = getattr(transformers, name)(**settings)
    template = spec.template() if callable(spec.template) else spec.template
    return processor_class(chat_template=template, **parts, **spec.processor)


def tiny_config(model_type: str, tokenizer, spec: TinySpec | None = None):
    """``AutoConfig.for_model(model_type)`` shrunk by :data:`SIZES`, with the spec's overrides and token ids."""
    from transformers import CONFIG_MAPPING, AutoConfig

    spec = spec or REGISTRY[model_type].tiny
    defaults = AutoConfig.for_model(model_type)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    text_class = CONFIG_MAPPING[spec.text.get("model_type", defaults.text_config.model_type)]
    text = text_class(**_settings({**SIZES["text"], **ids}, spec.text))
    parts = {"text_config": text}
    if getattr(defaults, "vision_config", None) is not None:    # Fuyu has none: a linear patch embedding
        vision_class = CONFIG_MAPPING[spec.vision.get("model_type", defaults.vision_config.model_type)]
        parts["vision_config"] = vision_class(**_settings(SIZES["vision"], spec.vision, probe=vision_class()))
    token_ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in spec.token_ids.items()}
    # a top-level setting read from the tokenizer (Emu3's vocabulary_map) is given as a function of it
    overrides = {name: value(tokenizer) if callable(value) else value for name, value in spec.config.items()}
    top = _settings({**SIZES["config"], "vocab_size": len(tokenizer)}, overrides, probe=defaults)
    return AutoConfig.for_model(model_type, **parts, tie_word_embeddings=False, **token_ids, **top)


def tiny_parts(model_type: str, spec: TinySpec | None = None):
    """``(config, model class, processor)`` of the family's tiny model (``spec``: the record's by default)."""
    import transformers

    processor = tiny_processor(model_type, spec)
    config = tiny_config(model_type, processor.tokenizer, spec)
    return config, getattr(transformers, REGISTRY[model_type].model_class), processor


def tiny_internvl_qwen3():
    """The tiny InternVL with InternVL3.5's decoder kind (Qwen3); not a family of its own."""
    return tiny_parts("internvl", internvl_qwen3_spec())


def internvl_qwen3_spec() -> TinySpec:
    """The tiny InternVL's spec with a Qwen3 decoder (query/key norms), as InternVL3.5 has."""
    spec = REGISTRY["internvl"].tiny
    return dataclasses.replace(spec, text={**spec.text, "model_type": "qwen3"})


def build_tiny(family: str, out_dir: Path, seed: int = 0, spec: TinySpec | None = None) -> Path:
    """Build a tiny random-weight model of ``family`` (a model_type of :data:`FAMILIES`) and its
    processor into ``out_dir``, from the family's record (``spec`` replaces its tiny spec)."""
    if family not in REGISTRY:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, model_cls, processor = tiny_parts(family, spec)
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
        if (spec or REGISTRY[family].tiny).weights is not None:
            (spec or REGISTRY[family].tiny).weights(model)
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.pad_token_id)
    gc.do_sample = False
    gc.max_new_tokens = 4
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
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
