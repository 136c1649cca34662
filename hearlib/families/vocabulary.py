"""The words every tiny model's tokenizer knows: a fixed list, the project's prompts and scene words.

:mod:`hearlib.families.tiny` puts them after each family's special tokens; the stand-in tokenizer of
:mod:`hearlib.families.real` gives them the ids the real tokenizer leaves free.
"""
from __future__ import annotations

__all__ = ["vocabulary"]

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


def vocabulary() -> list[str]:
    """The test words every tiny tokenizer knows: the fixed list, the project's prompts and scene words."""
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
