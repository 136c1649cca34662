"""Which samples a figure uses (:class:`Selection`); :mod:`hearlib.records.pipeline` walks it."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Selection"]


@dataclass(frozen=True)
class Selection:
    """Which samples a figure uses: the first ``n`` in the study order that the model answers
    correctly under ``prompt`` (all usable ones with ``correct_only=False``), at most
    ``per_class`` per label, then only labels with at least ``min_per_class`` samples.

    ``questions`` ((prompt, answer field) pairs, :mod:`hearlib.records.questions`) replaces ``prompt``:
    a sample is kept only when it is usable (and correct) under every one of them, so figures
    comparing question types compare the same samples. ``skip`` drops the first ``skip`` samples of
    the selection (``n`` counts after them): samples disjoint from a first selection of ``skip``."""

    n: int | None
    correct_only: bool = True
    prompt: str | None = None
    per_class: int | None = None
    min_per_class: int | None = None
    questions: tuple[tuple[str, str], ...] = ()
    skip: int = 0
