"""Chat templates that several lineages' tiny models share (data only).

Each template renders one user turn ``[image, text]`` with ``add_generation_prompt=True`` as the
family's hub template does for that turn; the lineage files pick or build theirs from these.
"""
from __future__ import annotations

__all__ = ["chatml", "cohere_turns", "HELPFUL", "LLAVA_TEMPLATE"]

HELPFUL = "You are a helpful assistant."

# LLaVA-1.5's conversation (``USER: <image>\n{prompt} ASSISTANT:``): the tiny LLaVA models' template
# and the model organism's (hearlib.organism.model.build_processor)
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{% if not loop.first %} {% endif %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% elif message['role'] == 'assistant' %} ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def chatml(system: str, image: str) -> str:
    """ChatML (Qwen2-VL, InternVL2.5 and their kin): a default system turn, the images before the text."""
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


def cohere_turns(image: str) -> str:
    """Cohere's turn tokens (Aya Vision, Command A Vision, Cohere Compass), ``image`` where the image goes;
    the tokenizer prepends <BOS_TOKEN>."""
    return (
        "{% for message in messages %}<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image + "{% endif %}{% endfor %}"
        "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "<|END_OF_TURN_TOKEN|>{% endfor %}"
        "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
    )
