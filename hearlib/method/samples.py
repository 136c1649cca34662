"""What the engine works on: a prepared :class:`Sample` (one image, prompt and answer through the
model's own processor and chat template), the :class:`ForwardSummary` of its unablated forward and the
:class:`RecordedForward` the engine keeps of that forward for the ablated ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from hearlib.errors import UserError

if TYPE_CHECKING:
    from hearlib.method.fastpath import FastLayer
    from hearlib.method.means import MeanKV


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
    # the unablated forward, once Engine.record has run it (None before)
    recorded: "RecordedForward | None" = field(default=None, repr=False, compare=False)
    # ℓ(1), ℓ(0) per method ("fast", "literal"): (means, (intact, ablated)), the means compared by
    # identity (the reference keeps the object alive, so no id() reuse); Engine.reference_logits
    references: "dict[str, tuple[MeanKV, tuple[float, float]]]" = field(default_factory=dict, repr=False,
                                                                        compare=False)

    @property
    def n_text(self) -> int:
        return self.seq_len - self.text_start

    @property
    def n_image(self) -> int:
        return int(self.image_positions.numel())

    @property
    def text_ids(self) -> list[int]:
        """The text tokens' ids: the positions after the image, or an encoder-decoder's decoder input."""
        sequence = self.inputs.get("decoder_input_ids", self.inputs["input_ids"])
        return sequence[0, self.text_start:self.seq_len].tolist()


@dataclass
class ForwardSummary:
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


@dataclass(eq=False)
class RecordedForward:
    """What :meth:`hearlib.method.engine.Engine.record` keeps of a sample's unablated forward: its
    :class:`ForwardSummary`, and the tensors the fast path reuses for every mask (per decoder layer ``l``)."""

    record: ForwardSummary
    prefix_k: list[torch.Tensor]        # [KVH, text_start, D] prefix + image keys (rotated) of layer l
    prefix_v: list[torch.Tensor]        # [KVH, text_start, D] their values
    text_embeds: torch.Tensor           # [1, P_txt, d_model] the decoder's input at the text positions
    text_positions: torch.Tensor        # [..., 1, P_txt] their position ids
    text_blocked: list[torch.Tensor]    # [P_txt, S] True where text query t may not read key s (the model's mask)
    prefix_reads_text: list[int]        # the layers in which a prefix/image position reads a text position
    # (means, layers): the fast path's per-layer tensors for the last means it ran with
    # (hearlib.method.fastpath.fast_layers); the means compared by identity
    fast_layers: "tuple[MeanKV, list[FastLayer]] | None" = None
    # a cross-attention model's decoder inputs (the tower's or the encoder's output among them), which the
    # literal path reruns the decoder on for every mask (no covered head lies before the decoder)
    decoder_inputs: dict | None = None
    # the decoder's other per-position inputs at the text positions ([1, P_txt, ...] by name: Gemma 3n's
    # per_layer_inputs; Family.decoder_position_inputs), which the fast path passes with text_embeds
    text_inputs: dict = field(default_factory=dict)

    def text_inputs_for(self, batch: int) -> dict:
        """:attr:`text_inputs` expanded to a batch of ``batch`` masks."""
        return {name: value.expand(batch, *value.shape[1:]) for name, value in self.text_inputs.items()}


def load_image(image, resolution: tuple[int, int] | None = None):
    """An RGB PIL image from a path or a PIL image, resized (bicubic) to ``resolution`` (w, h) where given;
    UserError for a missing or unreadable file or another type."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise UserError(f"image not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise UserError(f"cannot read image {path}: {error}") from None
    elif not isinstance(image, Image.Image):
        raise UserError(f"expected a PIL image or a path, got {type(image).__name__}")
    else:
        image = image.convert("RGB")
    if resolution is not None and image.size != tuple(resolution):
        image = image.resize(tuple(resolution), Image.BICUBIC)
    return image


def as_mask(mask, rows: int | None, cols: int, name: str, device) -> torch.Tensor:
    """``mask`` (booleans or 0/1, one row or ``rows`` rows of ``cols``) as a bool tensor [rows, cols]
    on ``device``; UserError naming the ``name`` mask otherwise."""
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
