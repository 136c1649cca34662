"""The model families hearlib supports and the paper's ten checkpoints.

Every family is run through transformers' own model class and processor; hearlib only
installs its attention function on the decoder. Families whose image token count depends
on the input size (LLaVA-NeXT anyres, Qwen2-VL dynamic resolution, InternVL tiling) run at
one fixed input resolution so that image positions line up across images (METHOD.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hearlib.errors import UnsupportedModel, UserError

# model_type -> (family, default fixed input resolution (w, h) or None for the processor's own)
FAMILIES: dict[str, tuple[str, tuple[int, int] | None]] = {
    "llava": ("LLaVA-1.5", None),
    "llava_next": ("LLaVA-NeXT", (336, 336)),
    "qwen2_vl": ("Qwen2-VL", (448, 448)),
    "qwen2_5_vl": ("Qwen2.5-VL", (448, 448)),
    "internvl": ("InternVL2.5", (448, 448)),
}


@dataclass(frozen=True)
class Checkpoint:
    name: str
    hub_id: str
    model_type: str
    resolution: tuple[int, int] | None = None

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type][0]


CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava"),
    Checkpoint("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf", "llava"),
    Checkpoint("llava-next-7b", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next", (336, 336)),
    Checkpoint("llava-next-13b", "llava-hf/llava-v1.6-vicuna-13b-hf", "llava_next", (336, 336)),
    Checkpoint("internvl2.5-1b", "OpenGVLab/InternVL2_5-1B-MPO-hf", "internvl", (448, 448)),
    Checkpoint("internvl2.5-2b", "OpenGVLab/InternVL2_5-2B-MPO-hf", "internvl", (448, 448)),
    Checkpoint("internvl2.5-4b", "OpenGVLab/InternVL2_5-4B-MPO-hf", "internvl", (448, 448)),
    Checkpoint("internvl2.5-8b", "OpenGVLab/InternVL2_5-8B-MPO-hf", "internvl", (448, 448)),
    Checkpoint("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", (448, 448)),
    Checkpoint("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", (448, 448)),
)}


def supported_architectures() -> str:
    return ", ".join(f"{family} ({model_type})" for model_type, (family, _) in FAMILIES.items())


def resolve(model: str | Path) -> tuple[str, Checkpoint | None]:
    """A registry name, a hub id or a local folder -> what to pass to from_pretrained."""
    text = str(model)
    if text in CHECKPOINTS:
        return CHECKPOINTS[text].hub_id, CHECKPOINTS[text]
    for checkpoint in CHECKPOINTS.values():
        if checkpoint.hub_id == text:
            return text, checkpoint
    return text, None


def load_engine(model: str | Path, *, device: str | torch.device | None = None,
                dtype: torch.dtype | None = None, trust_remote_code: bool = False,
                resolution: tuple[int, int] | None = None, device_map=None):
    """Load a supported vision-language model and its processor into an :class:`Engine`.

    ``model`` is a folder (a committed organism, a downloaded checkpoint), a hub id, or
    a registry name such as ``"llava-1.5-7b"``. Nothing is downloaded unless the hub id
    is not already cached and the environment allows it. ``trust_remote_code`` stays off
    unless the caller turns it on. ``device_map`` (e.g. ``"auto"``) shards a large model
    over the available devices with accelerate.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from hearlib.engine import Engine

    source, checkpoint = resolve(model)
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and not path.is_dir():
        raise UserError(f"model not found: {source} (a folder, a hub id such as "
                        f"'llava-hf/llava-1.5-7b-hf', or one of: {', '.join(CHECKPOINTS)})")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(f"cannot load model {source}: {str(error).splitlines()[0]}") from None
    except ValueError as error:
        hint = "" if trust_remote_code else " (hearlib never enables trust_remote_code by itself)"
        raise UnsupportedModel(f"{source}: {str(error).splitlines()[0]}{hint}; supported: "
                               f"{supported_architectures()}") from None
    if config.model_type not in FAMILIES:
        raise UnsupportedModel(f"{source} is a {config.model_type!r} model; hearlib supports "
                               f"{supported_architectures()}")
    if resolution is None:
        resolution = checkpoint.resolution if checkpoint else FAMILIES[config.model_type][1]
    on_cpu = device is None or torch.device(device).type == "cpu"
    dtype = dtype or (torch.float32 if on_cpu and device_map is None else torch.bfloat16)
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        model_obj = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map)
    except OSError as error:
        raise UserError(f"cannot load model {source}: {str(error).splitlines()[0]}") from None
    if device is not None and device_map is None:
        model_obj = model_obj.to(device)
    return Engine(model_obj, processor, name=checkpoint.name if checkpoint else source, resolution=resolution)
