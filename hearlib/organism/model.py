"""The model organism: a small, real ``LlavaForConditionalGeneration`` trained by the project.

It has the architecture of LLaVA-1.5: a CLIP vision tower (``CLIPVisionConfig``), the
standard two-layer MLP projector (``projector_hidden_act="gelu"``) and a Llama decoder,
with the project's own word-level tokenizer (trained with the ``tokenizers`` library,
every answer word a single token) and a ``LlavaProcessor`` whose chat template gives
exactly ``USER: <image>\\n{prompt} ASSISTANT:``. Saved with ``save_pretrained``, it
loads with ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained(dir)``.

The sizes in :data:`SIZES` share one vision tower (like LLaVA-1.5-7B and -13B share one
CLIP) and differ in the decoder (layers × heads and width).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from hearlib.errors import UserError
from hearlib.families.templates import LLAVA_TEMPLATE
from hearlib.organism import scenes
from hearlib.prompts import ALTERNATIVE_PROMPTS
from hearlib.records.questions import LABEL, OBJECT, ORGANISM_QUESTIONS

IMAGE_SIZE = scenes.IMAGE_SIZE          # 64 px
PATCH_SIZE = 8                          # 8×8 grid = 64 image tokens (CLS dropped)
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# question type -> (prompts, label key in the scene labels), for the question types of
# hearlib.records.questions.ORGANISM_QUESTIONS: the object question with the nine alternatives of
# appendix C.3 (the organism learns all ten), answered by the scene's "object" label
QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    name: ((question.prompt,) + (ALTERNATIVE_PROMPTS if question == OBJECT else ()),
           "object" if question.answer == LABEL else question.answer)
    for name, question in ORGANISM_QUESTIONS.items()
}

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]

# the chat template (LLaVA-1.5's) is hearlib.families.templates.LLAVA_TEMPLATE, shared with the tiny LLaVA


@dataclass(frozen=True)
class Size:
    name: str
    layers: int
    heads: int
    hidden: int
    intermediate: int

    @property
    def n_heads_total(self) -> int:
        return self.layers * self.heads


SIZES: dict[str, Size] = {
    "hear-organism-s": Size("hear-organism-s", 4, 4, 128, 256),
    "hear-organism-m": Size("hear-organism-m", 6, 6, 144, 288),
    "hear-organism-l": Size("hear-organism-l", 8, 8, 160, 320),
}
# sizes raised by the staged recipe (hearlib.organism.recipe, docs/ORGANISM.md); kept apart from
# SIZES, the fast recipe's three organisms that `make model-fast` trains and the tests expect committed
RECIPE_SIZES: dict[str, Size] = {
    "hear-organism-r8": Size("hear-organism-r8", 8, 8, 192, 512),
}
VISION = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4)


def resolve_size(name: str) -> Size:
    from hearlib.errors import UserError
    known = {**SIZES, **RECIPE_SIZES}
    key = name if name in known else f"hear-organism-{name}"
    if key not in known:
        raise UserError(f"unknown organism size {name!r}; choose from {', '.join(known)} (or s, m, l, r8)")
    return known[key]


def prompt_text(prompt: str) -> str:
    """The chat-template string of one image + prompt turn."""
    return f"USER: <image>\n{prompt} ASSISTANT:"


def corpus(answer_words: list[str]) -> list[str]:
    """Text the tokenizer is trained on: every prompt (as typed and lower-cased) and answer word."""
    lines = [prompt_text(p) for ps, _ in QUESTIONS.values() for p in ps]
    lines += [line.lower() for line in lines]
    lines += ["USER ASSISTANT : . , ? ! ' \u2019 - yes no"]
    lines += list(answer_words)
    return lines


def answer_vocabulary() -> list[str]:
    words = list(scenes.CATEGORIES) + list(scenes.SUPERCATEGORIES) + list(scenes.COLORS)
    words += list(scenes.POSITIONS) + list(scenes.DISTRACTORS) + ["center", "colour", "shape"]
    return words


def build_tokenizer(extra_words: list[str] = ()):
    """Word-level tokenizer trained with ``tokenizers`` and wrapped in ``PreTrainedTokenizerFast``."""
    from transformers import PreTrainedTokenizerFast
    words = answer_vocabulary() + [w for w in extra_words if w not in answer_vocabulary()]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, vocab_size=100000)
    tok.train_from_iterator(corpus(words), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"},
                                   padding_side="left", model_max_length=256)
    return fast


def patch_for(image_size: int) -> int:
    """Patch size that keeps 8×8 = 64 image tokens at any image size (``--image-size``)."""
    from hearlib.errors import UserError
    if image_size < 32 or image_size % 8:
        raise UserError(f"image size {image_size} must be a multiple of 8 and at least 32")
    return image_size // 8


def build_processor(tokenizer, image_size: int = IMAGE_SIZE):
    from transformers import CLIPImageProcessor, LlavaProcessor
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": image_size}, resample=3, do_center_crop=True,
        crop_size={"height": image_size, "width": image_size}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_for(image_size),
                          vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                          image_token="<image>", num_additional_image_tokens=1)


def build_config(size: Size, tokenizer, image_size: int = IMAGE_SIZE, feature_layer: int = -1):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    vision = CLIPVisionConfig(image_size=image_size, patch_size=patch_for(image_size), num_channels=3,
                              hidden_act="quick_gelu", projection_dim=VISION["hidden_size"], **VISION)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.intermediate,
                       num_hidden_layers=size.layers, num_attention_heads=size.heads,
                       num_key_value_heads=size.heads, head_dim=size.hidden // size.heads,
                       max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if feature_layer >= 0:
        # the same hidden state counted from the end: transformers' LLaVA asks its tower for hidden
        # states only when vision_feature_layer is truthy, so 0 (the patch embeddings) would get none
        feature_layer -= VISION["num_hidden_layers"] + 1
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         projector_hidden_act="gelu", vision_feature_select_strategy="default",
                         vision_feature_layer=feature_layer, image_seq_length=NUM_IMAGE_TOKENS,
                         tie_word_embeddings=False)
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    return config


def build_model(size: Size, tokenizer, seed: int = 0, image_size: int = IMAGE_SIZE, feature_layer: int = -1):
    """A Llava organism of ``size``; ``feature_layer`` is the tower layer the projector reads
    (-1 for the fast recipe, whose tower is supervised at its last layer; -2, LLaVA-1.5's choice,
    for the staged recipe, whose contrastive tower's last layer is shaped by the CLS objective alone)."""
    from transformers import LlavaForConditionalGeneration
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_config(size, tokenizer, image_size, feature_layer))
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.pad_token_id)
    gc.max_new_tokens = 4
    gc.do_sample = False
    return model


def parts(model):
    """(vision_tower, projector, language_model, lm_head, embed_tokens) of a Llava model."""
    inner = model.model
    return (inner.vision_tower, inner.multi_modal_projector, inner.language_model, model.lm_head,
            inner.language_model.embed_tokens)


def image_features(vision_tower, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """What LLaVA feeds the projector: the tower's hidden states at ``layer``
    (``vision_feature_layer``), CLS dropped (``vision_feature_select_strategy="default"``)."""
    out = vision_tower(pixel_values=pixel_values, output_hidden_states=True)
    return out.hidden_states[layer][:, 1:]


def load_decoder_from(model, tokenizer, source: Path, n_sizes: int) -> None:
    """Load ``source``'s projector, decoder and LM head into ``model`` (one size, same shapes, same
    tower layer, same vocabulary and tower weights), refusing anything else with one line."""
    from transformers import AutoModelForImageTextToText
    if n_sizes != 1:
        raise UserError("--decoder-from continues one size; give --size")
    if not (source / "config.json").is_file():
        raise UserError(f"--decoder-from {source}: no organism there (no config.json)")
    src = AutoModelForImageTextToText.from_pretrained(source)
    if src.config.vision_feature_layer != model.config.vision_feature_layer:
        raise UserError(f"--decoder-from {source} reads tower layer {src.config.vision_feature_layer}, "
                        f"this run {model.config.vision_feature_layer} (give the same --feature-layer)")
    if src.config.text_config.vocab_size != len(tokenizer):
        raise UserError(f"--decoder-from {source} has {src.config.text_config.vocab_size} tokens, "
                        f"this data {len(tokenizer)}")
    for a, b in zip(parts(model)[:4], parts(src)[:4]):
        a_state, b_state = a.state_dict(), b.state_dict()
        if {k: v.shape for k, v in a_state.items()} != {k: v.shape for k, v in b_state.items()}:
            raise UserError(f"--decoder-from {source} is another size than --size")
    tower, src_tower = parts(model)[0].state_dict(), parts(src)[0].state_dict()
    if any(not torch.equal(tower[k], src_tower[k]) for k in tower):
        raise UserError(f"--decoder-from {source} was trained on another tower than --vision-from's")
    for a, b in zip(parts(model)[1:4], parts(src)[1:4]):
        a.load_state_dict(b.state_dict())
    print(f"projector and decoder taken from {source}; stage B continues", flush=True)
