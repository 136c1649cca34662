"""Random-weight models of the real geometry of published checkpoints, for tests.

The hub files (config, processor, tokenizer, chat template; no weights) of two paper checkpoints
and of checkpoints of newer families are committed under tests/data/hub/ (sources and licences in
tests/data/hub/NOTICE.md); :func:`real_config_model` builds a random-weight model of one with its
depth cut and its real processor files beside it, and tests/families/test_real_configs.py runs each end to end.
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["REAL_HUB", "REAL_MODELS", "STANDIN_NOTE", "has_real_tokenizer", "standin_tokenizer", "real_config",
           "real_config_model"]

REAL_HUB = Path(__file__).resolve().parents[2] / "tests" / "data" / "hub"     # the repository's tests/data/hub
REAL_MODELS = {"llava-1.5-7b": "llava-1.5-7b-hf", "qwen2-vl-2b": "qwen2-vl-2b-instruct",
               "qwen2.5-vl-3b": "qwen2.5-vl-3b-instruct", "qwen3-vl-4b": "qwen3-vl-4b-instruct",
               "smolvlm-256m": "smolvlm-256m-instruct", "gemma-3-4b": "gemma-3-4b-it",
               "qwen3.5-0.8b": "qwen3.5-0.8b", "qwen2.5-omni-7b": "qwen2.5-omni-7b-awq",
               "blip2-opt-2.7b": "blip2-opt-2.7b"}
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
    (Gemma 3's ``tokenizer.json`` (33 MB) and ``tokenizer.model`` (4.7 MB), Qwen3.5's ``tokenizer.json``
    and ``vocab.json`` are in no public copy that could be retrieved whole). Every token the
    real tokenizer config lists in ``added_tokens_decoder`` (control, turn, image and unused tokens) keeps
    its real id, and the special ones stay special; hearlib's test words take free ids, placeholders the
    rest, up to the real size; bos/eos/pad/unk, the extra special tokens (image markers) and
    ``add_bos_token`` are the real config's. So the processor's image block, the chat template's turn markers and the
    image token id are the real ones; ordinary words are NOT split as the real tokenizer splits them."""
    import json

    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from hearlib.families.vocabulary import vocabulary

    config = json.loads((Path(source) / "tokenizer_config.json").read_text())
    listed = {int(i): t for i, t in config["added_tokens_decoder"].items()}
    vocab = {t["content"]: i for i, t in listed.items()}
    free = (i for i in range(max(listed) + 1) if i not in listed)
    words = [w for w in dict.fromkeys(vocabulary() + ["model", "user", "fire", "hydrant", "teddy", "bear"])
             if w not in vocab]                                                  # + tests' COCO labels
    for word in words:
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
    # the listed non-special tokens (Gemma 3's <start_of_turn>) and the test words are added tokens too, at the same
    # ids: markers inside the chat text stay whole, and a type whose tokenizer transformers rebuilds from the saved
    # vocabulary as a byte-level BPE (Qwen3.5's Qwen3_5Tokenizer, whatever class is saved) keeps the words whole
    fast.add_tokens([AddedToken(t["content"], normalized=False, special=False)
                     for _, t in sorted(listed.items()) if not t.get("special")])
    fast.add_tokens([AddedToken(w, single_word=True, normalized=False, special=False) for w in words])
    return fast


def real_config(name: str, layers: int = 2, vision_layers: int = 2, intermediate_size: int | None = None,
                hub: Path | None = None):
    """The real config of ``name`` (a key of :data:`REAL_MODELS` or a folder) with the depth cut.

    Decoder depth becomes ``layers`` (``num_hidden_layers`` and, where the config has one, the
    ``layer_types`` list); vision depth becomes ``vision_layers`` (``num_hidden_layers`` of a
    CLIP/InternViT tower, ``depth`` of a Qwen2-VL one), and so does an audio encoder's and a BLIP-2
    Q-Former's. Width, query and key/value heads, head size, RoPE / M-RoPE and vocabulary stay as published.
    ``intermediate_size`` (the decoder MLP width, OPT's ``ffn_dim``, which hearlib never touches) may be cut
    too, to save CPU time. An Omni
    checkpoint's config (Qwen2.5-Omni) gives its thinker's, the image-text-to-text model that hearlib runs."""
    from transformers import AutoConfig

    source = Path(hub or REAL_HUB) / REAL_MODELS.get(name, name)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no hub files for {name!r} at {source}")
    config = AutoConfig.from_pretrained(source)        # trust_remote_code stays off
    config = getattr(config, "thinker_config", config)  # an Omni model's talker and vocoder are not built
    text, vision = config.text_config, config.vision_config
    if not 1 <= layers <= text.num_hidden_layers or vision_layers < 1:
        raise ValueError(f"layers must lie in 1..{text.num_hidden_layers} and vision_layers be >= 1")
    text.num_hidden_layers = layers
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types)[:layers]
    if getattr(text, "max_window_layers", None) is not None:
        text.max_window_layers = min(text.max_window_layers, layers)
    if intermediate_size is not None:                       # OPT (BLIP-2's decoder) names it ffn_dim
        setattr(text, "ffn_dim" if hasattr(text, "ffn_dim") else "intermediate_size", intermediate_size)
    depth_key = "depth" if hasattr(vision, "depth") else "num_hidden_layers"
    setattr(vision, depth_key, vision_layers)
    if getattr(config, "qformer_config", None) is not None:   # BLIP-2's Q-Former, between tower and decoder
        config.qformer_config.num_hidden_layers = vision_layers
    if getattr(config, "audio_config", None) is not None:   # never fed by an image-only input
        config.audio_config.num_hidden_layers = vision_layers
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
            # as build_tiny: a matrix transformers initialises to zeros (Gemma 3's mm_input_projection_weight) or
            # next to zero (BLIP-2's vision tower: its config's initializer_range 1e-10) would cut the image off
            # the decoder; draw it like the other matrices
            if param.ndim >= 2 and float(param.abs().max()) < 1e-6:
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
            f"The tokenizer in this folder is a STAND-IN (hearlib.families.real.standin_tokenizer), not {name}'s: "
            "the real tokenizer files are not in tests/data/hub. Config, processor config and chat template "
            "are the real ones; special-token ids are the real tokenizer config's.\n")
    return out_dir
