"""Question types: which question is asked about an image, and which label of the sample answers it.

The paper asks one question ("what is the main object"); the organism also answers colour,
position and kind questions about the same image (docs/ORGANISM.md). A :class:`Question` is a
prompt and an *answer field*: the field of a :class:`hearlib.records.datasets.ImageRecord` that holds the
answer word (``label``, ``supercategory``, or a key of ``extra`` such as ``color``). The field is
the :class:`hearlib.records.stages.Settings` field ``answer`` (with the prompt), so it enters every record
key and two questions never share a record.

:func:`questions_for` says which questions a dataset offers: the object question always; the
organism's colour, position and kind questions where the samples carry the generated scenes'
labels (colour and position; real COCO has neither, and its super-categories such as "outdoor"
or "accessory" are not the organism's kinds); plus any the user supplies (a profile's
``questions``: name -> {prompt, answer}).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from hearlib.errors import UserError
from hearlib.prompts import COLOR_PROMPT, KIND_PROMPT, PAPER_PROMPT, POSITION_PROMPT

__all__ = ["Question", "OBJECT", "ORGANISM_QUESTIONS", "answer_of", "has_scene_labels", "questions_for",
           "parse_questions"]

LABEL = "label"


@dataclass(frozen=True)
class Question:
    """A question type: its name, the prompt asked and the sample field holding the answer word."""

    name: str
    prompt: str
    answer: str = LABEL


OBJECT = Question("object", PAPER_PROMPT, LABEL)
# the organism's question types, their one list (hearlib.organism.model.QUESTIONS derives its own from it)
ORGANISM_QUESTIONS: dict[str, Question] = {
    "object": OBJECT,
    "color": Question("color", COLOR_PROMPT, "color"),
    "position": Question("position", POSITION_PROMPT, "position"),
    "kind": Question("kind", KIND_PROMPT, "supercategory"),
}
_ATTRIBUTES = ("label", "supercategory", "domain", "image_id")


def answer_of(item, field: str = LABEL) -> str | None:
    """The answer word of ``item`` under answer field ``field`` (None when the sample lacks it)."""
    if field in _ATTRIBUTES:
        value = getattr(item, field, None)
    else:
        value = (getattr(item, "extra", None) or {}).get(field)
    if value is None or not isinstance(value, (str, int)) or str(value).strip() == "":
        return None
    return str(value)


def has_scene_labels(items: Sequence) -> bool:
    """Whether every item carries the generated scenes' colour and position labels."""
    return bool(items) and all(answer_of(it, "color") and answer_of(it, "position") for it in items)


def parse_questions(spec: Mapping | None) -> dict[str, Question]:
    """A profile's ``questions`` (name -> {prompt, answer}) as :class:`Question` s; UserError if malformed."""
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise UserError("questions must map a name to {prompt: ..., answer: ...}")
    out = {}
    for name, entry in spec.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise UserError(f"question {name!r} needs a prompt (a non-empty string) and an answer field")
        unknown = set(entry) - {"prompt", "answer"}
        if unknown:
            raise UserError(f"question {name!r}: unknown key(s) {sorted(unknown)}; give prompt and answer")
        field = entry.get("answer", LABEL)
        if not isinstance(field, str) or not field:
            raise UserError(f"question {name!r}: answer must name a sample field (label, supercategory, "
                            "or a key of the sample's extra labels such as color)")
        out[str(name)] = Question(str(name), entry["prompt"], field)
    return out


def questions_for(items: Sequence, custom: Mapping | None = None) -> dict[str, Question]:
    """The question types the dataset of ``items`` offers, object first (see the module docstring).

    ``custom`` (name -> {prompt, answer} or :class:`Question`) adds questions or replaces one of
    the same name; a supplied question whose answer field some sample lacks is a UserError."""
    offered = dict(ORGANISM_QUESTIONS) if has_scene_labels(items) else {"object": OBJECT}
    extra = {k: v for k, v in (custom or {}).items() if isinstance(v, Question)}
    extra.update(parse_questions({k: v for k, v in (custom or {}).items() if not isinstance(v, Question)}))
    for name, question in extra.items():
        missing = [it for it in items if answer_of(it, question.answer) is None]
        if missing:
            raise UserError(f"question {name!r}: {len(missing)} of {len(items)} samples have no "
                            f"{question.answer!r} answer (e.g. {missing[0].image_id}); the fields are label, "
                            "supercategory and the sample's extra labels")
        offered[name] = question
    return offered
