"""The words every tiny model's tokenizer knows: a fixed list, the project's prompts and scene words.

:mod:`hearlib.families.tiny` puts them after each family's special tokens; the stand-in tokenizer of
:mod:`hearlib.families.real` gives them the ids the real tokenizer leaves free. The scene words are an
argument: :data:`SCENE_WORDS` by default, the answer words of the organism's scenes
(:func:`hearlib.organism.model.answer_vocabulary`, which a test holds equal), so that this package
never imports :mod:`hearlib.organism`.
"""
from __future__ import annotations

from typing import Sequence

from hearlib.prompts import ALTERNATIVE_PROMPTS, COLOR_PROMPT, KIND_PROMPT, PAPER_PROMPT, POSITION_PROMPT

__all__ = ["vocabulary", "PROMPTS", "SCENE_WORDS"]

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

# the project's prompts, in the order the organism asks them (object, colour, position, kind)
PROMPTS = (PAPER_PROMPT, *ALTERNATIVE_PROMPTS, COLOR_PROMPT, POSITION_PROMPT, KIND_PROMPT)

# the answer words of the organism's scenes (objects, their kinds, colours, positions, distractors),
# in the order of hearlib.organism.model.answer_vocabulary()
SCENE_WORDS = ("car boat plane fish bird cat apple banana pizza chair table lamp vehicle animal food furniture "
               "red green blue yellow purple orange left right top bottom centre ball box cone star center colour "
               "shape").split()


def vocabulary(scene_words: Sequence[str] = SCENE_WORDS, prompts: Sequence[str] = PROMPTS) -> list[str]:
    """The test words every tiny tokenizer knows: the fixed list, the words of ``prompts`` and
    ``scene_words``, each also capitalized, and punctuation (each word once, in that order)."""
    words = list(_WORDS)
    for p in prompts:
        words += p.lower().replace("?", " ").replace(".", " ").replace(",", " ").split()
    words += list(scene_words)
    words += [w.capitalize() for w in list(words)] + ["USER", "ASSISTANT", "InternVL"]
    seen: dict[str, None] = {}
    for w in words + _PUNCT:
        seen.setdefault(w, None)
    return list(seen)
