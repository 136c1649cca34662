"""What the engine works on: a prepared :class:`Sample` (one image, prompt and answer through the
model's own processor and chat template) and the :class:`Record` of its unablated forward."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hearlib.errors import UserError


@dataclass
class Sample:
    """One (image, prompt, answer) prepared by the model's own processor and chat template."""

    inputs: dict
    prompt: str
    answer: str | None
    answer_id: int | None
    answer_tokens: list[str]
    image_positions: torch.Tensor
    text_start: int
    seq_len: int
    prefix_hash: str
    sample_id: str = ""
    image_size: tuple[int, int] | None = None   # (width, height) of the image given to the processor
    _state: dict = field(default_factory=dict, repr=False)

    @property
    def n_text(self) -> int:
        return self.seq_len - self.text_start

    @property
    def n_image(self) -> int:
        return int(self.image_positions.numel())


@dataclass
class Record:
    """What one unablated forward tells about a sample."""

    logit: float                     # adjusted logit of the answer token
    predicted_id: int                # argmax at the last position
    image_attention: np.ndarray      # [L, H] Eq. 10
    text_to_image: np.ndarray        # [L, H, P_txt, P_img]
    head_outputs: np.ndarray         # [L, H, d_model]

    @property
    def correct(self) -> bool:
        return bool(self._answer_id is not None and self.predicted_id == self._answer_id)

    _answer_id: int | None = None


def _as_mask(mask, rows: int | None, cols: int, name: str, device) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(mask), device=device)
    if tensor.dtype != torch.bool:
        if not torch.all((tensor == 0) | (tensor == 1)):
            raise UserError(f"{name} mask must be boolean or 0/1")
        tensor = tensor.bool()
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[1] != cols or (rows is not None and tensor.shape[0] != rows):
        expected = f"[{rows if rows is not None else 'M'}, {cols}]"
        raise UserError(f"{name} mask has shape {tuple(tensor.shape)}, expected {expected}")
    return tensor
