"""The staged recipe: an organism raised the way real LVLMs are (issue 16, docs/ORGANISM.md).

Four stages (and an optional fifth), each a function of this trainer, each resumable (a
checkpoint per stage under ``OUT/<name>.stages/<stage>/``; a rerun skips finished stages and
resumes an interrupted one from its last checkpoint, bit for bit: every batch is drawn from
``(seed, stage, step)``), timed, with its own held-out check recorded in
``OUT/<name>/training_stages.json``:

1. ``text``: the Llama decoder pretrained as a language model on a text corpus generated from
   the scene world (descriptions of scenes, and questions about a described scene answered
   from the description, so that the answer has to be found in context). Check: held-out
   perplexity (and in-context answer accuracy).
2. ``contrastive``: the CLIP vision tower trained against captions with CLIP's symmetric
   InfoNCE (``CLIPModel(return_loss=True)``, a small CLIP text tower). Check: held-out
   image->caption retrieval accuracy.
3. ``align``: projector alignment by captioning, tower and decoder frozen (LLaVA stage 1).
   Check: held-out captioning loss (mean NLL per caption token).
4. ``instruct``: instruction tuning on the question mix of the fast recipe, projector and
   decoder trained, tower frozen (LLaVA stage 2). Check: held-out answer accuracy per
   question type and style.
5. ``tune`` (only when ``Recipe.tune_steps`` > 0): instruction tuning continued with the tower
   unfrozen too, every weight trained at a lower rate, as Qwen2-VL, InternVL and
   LLaVA-OneVision end (LLaVA-1.5 keeps the tower frozen and stops after stage 4). Check: held-out
   answer accuracy, as stage 4. Stages 1-4 are then taken from the finished four-stage organism
   when it was trained with the same settings (its weights are their result).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.organism import scenes

STAGES = ("text", "contrastive", "align", "instruct", "tune")
# what each stage's result depends on: a finished stage of the full recipe can be reused by a run
# with an ingredient removed when none of these was removed (its inputs are then identical)
DEPENDS = {"text": (), "contrastive": (), "align": ("text", "contrastive"),
           "instruct": ("text", "contrastive", "align"), "tune": ("text", "contrastive", "align")}
# the Recipe fields of each stage (a stage's result does not depend on the fields of later stages)
STAGE_FIELDS = {"text": "text_", "contrastive": "clip_", "align": "align_", "instruct": "instruct_",
                "tune": "tune_"}
# the ingredient study (docs/ORGANISM.md): each can be removed from the recipe on its own
INGREDIENTS = {"text": "no text pretraining (the decoder starts from random weights)",
               "contrastive": "per-patch tower (the fast recipe's tower, supervised with the main object's class "
                              "per patch) instead of the contrastive one",
               "align": "no projector alignment (the projector starts from random weights in instruction tuning)"}
CAPTION_PROMPT = "Describe the image briefly."
# the text-pretraining corpora: one-step (every question answered from the described main object) and
# two-step (design D3, docs/ORGANISM.md: half the questions ask about "the key item", bound to one of
# the described objects in a sentence of its own, so the answer needs the binding first)
TEXT_CORPORA = ("one-step", "two-step")
BINDINGS = ("the key item is the {} .", "the thing in focus is the {} .")
STYLE_PHRASE = {"real": "a photo of", "sketch": "a sketch of", "clipart": "a clipart of"}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the centre"}
DESCRIPTION_WORDS = ["a", "an", "the", "of", "on", "at", "in", "with", "and", "background", "photo",
                     "sketch", "clipart", "there", "is", "(", ")", ",", ".", "Describe", "image", "briefly",
                     "left", "right", "top", "bottom", "centre"] + list(scenes.TEXTURES)


def ingredients(names) -> tuple:
    """``names`` as a tuple, each one of :data:`INGREDIENTS` (a UserError naming the choices otherwise)."""
    names = tuple(names)
    bad = [w for w in names if w not in INGREDIENTS]
    if bad:
        raise UserError(f"cannot remove {', '.join(bad)}: the ingredients are {', '.join(INGREDIENTS)}")
    return names


@dataclass
class Recipe:
    """Hyper-parameters of the staged recipe (the defaults are the documented recipe)."""
    size: str = "hear-organism-r8"
    text_docs: int = 40000          # training documents from seed-0 scenes (held-out: seed 1)
    text_steps: int = 3000
    text_batch: int = 32
    text_lr: float = 1e-3
    text_corpus: str = "one-step"   # "two-step": half the questions ask about a referent bound first (design D3)
    clip_steps: int = 4000
    clip_batch: int = 128
    clip_lr: float = 1e-3
    clip_text_layers: int = 2
    align_steps: int = 600
    align_batch: int = 32
    align_lr: float = 1e-3
    instruct_steps: int = 1500
    instruct_batch: int = 48
    instruct_lr: float = 3e-4
    tune_steps: int = 0             # stage 5, tower unfrozen (0: no stage 5, the tower stays frozen as in LLaVA-1.5)
    tune_batch: int = 48
    tune_lr: float = 1e-4
    feature_layer: int = -2         # the tower layer the projector reads (LLaVA-1.5: -2)
    without: tuple = ()             # ingredients removed (INGREDIENTS), for the ingredient study
    tower_from: str = "data/models/hear-organism-s"   # the per-patch tower, when "contrastive" is removed
    heldout_images: int = 300       # per check (images of the held-out folder)
    save_every: int = 200
    stage_steps: dict = field(default_factory=dict)   # overrides, e.g. {"text": 20}

    def __post_init__(self):
        self.without = ingredients(self.without)
        if self.text_corpus not in TEXT_CORPORA:
            raise UserError(f"text_corpus {self.text_corpus!r}: choose from {', '.join(TEXT_CORPORA)}")
        if self.tune_steps < 0:
            raise UserError(f"tune_steps {self.tune_steps}: expected 0 (no stage 5) or a number of steps")

    def name(self, size_name: str) -> str:
        """The organism's folder name: the size, what was removed (``hear-organism-r8-no-text``),
        and ``-tuned`` with stage 5."""
        return (size_name + ("-twostep" if self.text_corpus == "two-step" else "")
                + "".join(f"-no-{w}" for w in STAGES if w in self.without)
                + ("-tuned" if self.tune_steps > 0 else ""))

    @property
    def stages(self) -> tuple:
        """The stages this recipe runs (stage 5 only with ``tune_steps`` > 0), removed ones included."""
        return STAGES if self.tune_steps > 0 else STAGES[:-1]

    def settings_through(self, stage: str) -> dict:
        """The settings that ``stage``'s result depends on: every field but those of later stages
        (and the ingredient bookkeeping, which :meth:`same_stage` reads on its own)."""
        later = STAGES[STAGES.index(stage) + 1:]
        out = {k: v for k, v in asdict(self).items() if k not in {"without", "tower_from", "stage_steps"}
               and not any(k.startswith(STAGE_FIELDS[s]) for s in later)}
        return {**out, "stage_steps": {s: n for s, n in self.stage_steps.items() if s not in later}}

    def same_stage(self, other: "Recipe", stage: str) -> bool:
        """Whether ``stage`` of ``other`` computed exactly what this recipe's would (same settings
        up to that stage, nothing it depends on removed in either), so that its result can be reused."""
        removed = set(self.without) | set(other.without)
        return (self.settings_through(stage) == other.settings_through(stage) and stage not in removed
                and not removed & set(DEPENDS[stage]))

    @classmethod
    def from_json(cls, saved: dict) -> "Recipe":
        """A recipe as ``recipe.json`` or ``training_stages.json`` stores it (fields this version
        does not know are dropped: older runs wrote fewer, never other meanings)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def steps(self, stage: str) -> int:
        key = {"text": "text_steps", "contrastive": "clip_steps", "align": "align_steps",
               "instruct": "instruct_steps", "tune": "tune_steps"}[stage]
        return int(self.stage_steps.get(stage, getattr(self, key)))


# --------------------------------------------------------------------------- text
def color_name(rgb) -> str:
    """The named colour of :data:`scenes.COLORS` nearest to ``rgb`` (squared RGB distance)."""
    return min(scenes.COLORS, key=lambda c: sum((a - b) ** 2 for a, b in zip(scenes.COLORS[c], rgb)))


def describe(scene: scenes.Scene, style: str | None = None, rng: np.random.Generator | None = None) -> str:
    """A caption of ``scene``: its main object (colour, kind, place), distractors and background.
    ``rng`` varies the word order (the main object first or after the distractors); none: canonical."""
    main = f"a {scene.color} {scene.category} ( {scene.supercategory} ) {WHERE[scene.position]}"
    others = [f"a {color_name(d.color)} {d.category}" for d in scene.distractors]
    rest = " and ".join(others)
    lead = f"{STYLE_PHRASE[style]} " if style else ""
    bg = f"on a {scene.texture} background"
    if rng is not None and others and rng.integers(2):
        return f"{lead}{rest} , and {main} , {bg} ."
    return f"{lead}{main} , with {rest} , {bg} ." if others else f"{lead}{main} , {bg} ."


def document(scene: scenes.Scene, rng: np.random.Generator, kind: str = "one-step") -> tuple[str, str | None]:
    """One text-pretraining document: a description, or (2 in 3) a question about a described
    scene in the chat format, answered from the description. In the ``two-step`` corpus half the
    questions are :func:`two_step_question` s. Returns (text, answer or None)."""
    style = scenes.STYLES[rng.integers(len(scenes.STYLES))] if rng.integers(2) else None
    desc = describe(scene, style, rng)
    if rng.integers(3) == 0:
        return desc, None
    q = list(O.QUESTIONS)[rng.integers(len(O.QUESTIONS))]
    prompts, key = O.QUESTIONS[q]
    prompt = prompts[rng.integers(len(prompts))]
    answer = scene.labels()[key]
    if kind == "two-step" and rng.integers(2):
        prompt, answer = two_step_question(scene, rng)
    return f"USER: {desc}\n{prompt} ASSISTANT: {answer}", answer


def two_step_question(scene: scenes.Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A referent bound in one sentence, its attribute asked in the next: "the key item is the cone .
    What colour is the key item ?" (the colour of the described cone), or bound by its colour and asked
    for its name. The referent is any described object, the main one or a distractor, whose name (or
    colour) no other object of the scene shares. Returns (the two sentences, the answer)."""
    objects = [(scene.main.category, scene.color)] + [(d.category, color_name(d.color)) for d in scene.distractors]
    names, colours = [n for n, _ in objects], [c for _, c in objects]
    choices = [(n, c) for n, c in objects if names.count(n) == 1]
    name, colour = choices[rng.integers(len(choices))]
    binding = BINDINGS[rng.integers(len(BINDINGS))]
    referent = binding.split(" is ")[0]
    if colours.count(colour) == 1 and rng.integers(2):
        return f"{binding.format(colour + ' one')} What is {referent} ?", name
    return f"{binding.format(name)} What colour is {referent} ?", colour


def corpus(seed: int, n: int, offset: int = 0, kind: str = "one-step") -> list[tuple[str, str | None]]:
    """``n`` documents of scenes ``offset..offset+n`` of ``seed`` (deterministic; the two-step corpus
    draws its extra choices after the one-step corpus's, which it otherwise equals document by document)."""
    out = []
    for i in range(offset, offset + n):
        out.append(document(scenes.make_scene(seed, i), np.random.default_rng([seed, i, 7]), kind))
    return out


# --------------------------------------------------------------------------- checks
def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp of the mean negative log-likelihood per token."""
    return float(math.exp(nll_sum / max(1, n_tokens)))


def retrieval_accuracy(sim: torch.Tensor, captions: list[str]) -> float:
    """Image->caption retrieval: share of rows whose best caption (column argmax) has the same
    text as the row's own caption (``captions[i]`` belongs to image ``i``; identical captions count)."""
    best = sim.argmax(1).tolist()
    return float(np.mean([captions[j] == captions[i] for i, j in enumerate(best)]))
