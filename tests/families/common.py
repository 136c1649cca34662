"""What the lineage tests share: the paper prompt in one user turn, rendered by a tiny model's processor."""
from __future__ import annotations

from hearlib.prompts import PAPER_PROMPT

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PAPER_PROMPT}]}]


def rendered(folder) -> str:
    """The chat template of the processor in ``folder`` (or the family's, where the processor keeps none)
    applied to :data:`MESSAGES`, ready to generate."""
    from hearlib.method.loading import load_processor

    return load_processor(folder).apply_chat_template(MESSAGES, add_generation_prompt=True)
