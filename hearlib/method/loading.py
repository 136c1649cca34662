"""The model families hearlib supports and the paper's ten checkpoints.

Every family is run through transformers' own model class and processor; hearlib only
installs its attention function on the decoder. Families whose image token count depends
on the input size (LLaVA-NeXT anyres, Qwen2-VL dynamic resolution, InternVL tiling) run at
one fixed input resolution so that image positions line up across images (METHOD.md).
What hearlib knows about each family is its record in :mod:`hearlib.families.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hearlib.families import registry as families
from hearlib.errors import UnsupportedModel, UserError
from hearlib.families.registry import family_of, supported_architectures
from hearlib.method.checks import versions

# model_type -> (family, default fixed input resolution (w, h) or None for the processor's own),
# read from the records of hearlib.families.registry
FAMILIES: dict[str, tuple[str, tuple[int, int] | None]] = {
    model_type: (family.name, family.resolution) for model_type, family in families.FAMILIES.items()}


# Chat template styles: what ``apply_chat_template`` of one user turn [image, text p] with
# ``add_generation_prompt=True`` renders, before the processor expands the image token (LLaVA's
# tokenizer then prepends BOS ``<s>``; the ChatML ones add no BOS).
TEMPLATES: dict[str, str] = {
    "vicuna": "USER: <image>\n{p} ASSISTANT:",
    "chatml-qwen2-vl": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                        "<|vision_start|><|image_pad|><|vision_end|>{p}<|im_end|>\n<|im_start|>assistant\n"),
    # InternVL2.5 (-hf): the processor expands <IMG_CONTEXT> to <img> + 256 × <IMG_CONTEXT> + </img>
    "chatml-internvl": "<|im_start|>user\n<IMG_CONTEXT>\n{p}<|im_end|>\n<|im_start|>assistant\n",
}


@dataclass(frozen=True)
class Checkpoint:
    """One of the paper's checkpoints and its geometry (the table of docs/MODELS.md).

    ``resolution``: the fixed input size (w, h) hearlib resizes every image to (None: the
    processor's own resize and crop). ``layers × heads`` is N, the number of query heads
    HeAr attributes; ``kv_heads`` the key/value heads (GQA when fewer). Image tokens at that
    input: ``views`` views of ``grid`` (rows, cols) tokens each plus ``newline_tokens``.
    ``checked``: the folder under ``tests/data/hub`` that tests/method/test_models.py checks the row
    against; empty when the row is from the model card / config and not checked here."""

    name: str
    hub_id: str
    model_type: str
    resolution: tuple[int, int] | None = None
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    hidden: int = 0
    input_size: tuple[int, int] = (0, 0)
    grid: tuple[int, int] = (0, 0)
    views: int = 1
    newline_tokens: int = 0
    image_tokens: int = 0
    language_model: str = ""
    template: str = ""
    checked: str = ""

    @property
    def family(self) -> str:
        return family_of(self.model_type).name

    @property
    def n_total_heads(self) -> int:
        """N = layers × heads."""
        return self.layers * self.heads


_LLAVA = dict(input_size=(336, 336), grid=(24, 24), image_tokens=576, template="vicuna")
# LLaVA-NeXT at a fixed 336 × 336 input: the best grid pinpoint is 336 × 672 (two 336 tiles);
# the image gives the base view (24 × 24) plus the high-res view unpadded back to 24 × 24 with an
# image_newline token closing each of its 24 rows: 576 + 576 + 24 = 1176.
_LLAVA_NEXT = dict(input_size=(336, 336), grid=(24, 24), views=2, newline_tokens=24, image_tokens=1176,
                   template="vicuna")
# InternVL2.5 at 448 × 448: one tile (no thumbnail), 32 × 32 patches of 14 px, pixel shuffle 0.5.
_INTERNVL = dict(input_size=(448, 448), grid=(16, 16), image_tokens=256, template="chatml-internvl")
# Qwen2-VL at 448 × 448: image_grid_thw [1, 32, 32], 2 × 2 patches merged into one token.
_QWEN2_VL = dict(input_size=(448, 448), grid=(16, 16), image_tokens=256, template="chatml-qwen2-vl")

CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", layers=32, heads=32, kv_heads=32,
               hidden=4096, language_model="Vicuna-7B v1.5", checked="llava-1.5-7b-hf", **_LLAVA),
    Checkpoint("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf", "llava", layers=40, heads=40, kv_heads=40,
               hidden=5120, language_model="Vicuna-13B v1.5", **_LLAVA),
    Checkpoint("llava-next-7b", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next", (336, 336), layers=32,
               heads=32, kv_heads=32, hidden=4096, language_model="Vicuna-7B v1.5", **_LLAVA_NEXT),
    Checkpoint("llava-next-13b", "llava-hf/llava-v1.6-vicuna-13b-hf", "llava_next", (336, 336), layers=40,
               heads=40, kv_heads=40, hidden=5120, language_model="Vicuna-13B v1.5", **_LLAVA_NEXT),
    Checkpoint("internvl2.5-1b", "OpenGVLab/InternVL2_5-1B-MPO-hf", "internvl", (448, 448), layers=24,
               heads=14, kv_heads=2, hidden=896, language_model="Qwen2.5-0.5B-Instruct", **_INTERNVL),
    Checkpoint("internvl2.5-2b", "OpenGVLab/InternVL2_5-2B-MPO-hf", "internvl", (448, 448), layers=24,
               heads=16, kv_heads=8, hidden=2048, language_model="InternLM2.5-1.8B-chat", **_INTERNVL),
    Checkpoint("internvl2.5-4b", "OpenGVLab/InternVL2_5-4B-MPO-hf", "internvl", (448, 448), layers=36,
               heads=16, kv_heads=2, hidden=2048, language_model="Qwen2.5-3B-Instruct", **_INTERNVL),
    Checkpoint("internvl2.5-8b", "OpenGVLab/InternVL2_5-8B-MPO-hf", "internvl", (448, 448), layers=32,
               heads=32, kv_heads=8, hidden=4096, language_model="InternLM2.5-7B-chat", **_INTERNVL),
    Checkpoint("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", (448, 448), layers=28, heads=12,
               kv_heads=2, hidden=1536, language_model="Qwen2-1.5B", checked="qwen2-vl-2b-instruct", **_QWEN2_VL),
    Checkpoint("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", (448, 448), layers=28, heads=28,
               kv_heads=4, hidden=3584, language_model="Qwen2-7B", **_QWEN2_VL),
)}


def models_table() -> str:
    """The Markdown table of docs/MODELS.md, rendered from :data:`CHECKPOINTS`."""
    rows = ["| checkpoint | hub id | input (w × h) | image tokens | token grid | layers × heads = N "
            "| key/value heads | decoder | chat template | source |",
            "| --- | --- | --- | ---: | --- | --- | ---: | --- | --- | --- |"]
    for c in CHECKPOINTS.values():
        rows_, cols = c.grid
        grid = f"{rows_} × {cols}" if c.views == 1 else (
            f"{c.views} × ({rows_} × {cols}) + {c.newline_tokens} newline")
        fixed = "fixed by hearlib" if c.resolution else "processor's resize + crop"
        source = (f"checked against `tests/data/hub/{c.checked}`" if c.checked
                  else "model card / config, not checked here")
        rows.append(f"| {c.name} | `{c.hub_id}` | {c.input_size[0]} × {c.input_size[1]} ({fixed}) | "
                    f"{c.image_tokens} | {grid} | {c.layers} × {c.heads} = {c.n_total_heads} | {c.kv_heads} | "
                    f"{c.language_model} (hidden {c.hidden}) | {c.template} | {source} |")
    return "\n".join(rows) + "\n"


def resolve(model: str | Path) -> tuple[str, Checkpoint | None]:
    """A registry name, a hub id or a local folder -> what to pass to from_pretrained."""
    text = str(model)
    if text in CHECKPOINTS:
        return CHECKPOINTS[text].hub_id, CHECKPOINTS[text]
    for checkpoint in CHECKPOINTS.values():
        if checkpoint.hub_id == text:
            return text, checkpoint
    return text, None


def loading_problem(report: dict) -> str | None:
    """Why a loading report (``from_pretrained(..., output_loading_info=True)``) means the model is
    not the checkpoint: weights the model uses that the checkpoint lacks (left at their random
    initialisation) or holds in another shape; None when every weight was loaded."""
    missing = sorted(report.get("missing_keys") or ())
    mismatched = sorted(str(k[0]) if isinstance(k, (tuple, list)) else str(k)
                        for k in report.get("mismatched_keys") or ())
    if not missing and not mismatched:
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) missing from the checkpoint ({', '.join(missing[:4])}"
                     f"{', ...' if len(missing) > 4 else ''})")
    if mismatched:
        parts.append(f"{len(mismatched)} of another shape ({', '.join(mismatched[:4])}"
                     f"{', ...' if len(mismatched) > 4 else ''})")
    unexpected = sorted(report.get("unexpected_keys") or ())
    if unexpected:
        parts.append(f"{len(unexpected)} in the checkpoint unused ({', '.join(unexpected[:2])}"
                     f"{', ...' if len(unexpected) > 2 else ''})")
    v = versions()
    return ("; ".join(parts) + f": transformers {v['transformers']} would run them at random initialisation "
            f"(torch {v['torch']}). A renamed key usually means another transformers version wrote the "
            "checkpoint; --allow-partial-load studies it anyway, and every record made with it says so")


def load_processor(source: str | Path, *, trust_remote_code: bool = False):
    """``AutoProcessor.from_pretrained(source)`` with the family's prompt format where the processor keeps no
    chat template (BLIP-2's, InstructBLIP's: :attr:`hearlib.families.registry.Family.chat_template`), as the
    engine renders prompts."""
    from transformers import AutoConfig, AutoProcessor

    processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    family = families.FAMILIES.get(config.model_type)
    return family.give_chat_template(processor) if family is not None else processor


def load_engine(model: str | Path, *, device: str | torch.device | None = None,
                dtype: torch.dtype | None = None, trust_remote_code: bool = False,
                resolution: tuple[int, int] | None = None, device_map=None, allow_partial_load: bool = False,
                check: bool = True):
    """Load a supported vision-language model and its processor into an :class:`Engine`.

    ``model`` is a folder (a committed organism, a downloaded checkpoint), a hub id, or
    a registry name such as ``"llava-1.5-7b"``. Nothing is downloaded unless the hub id
    is not already cached and the environment allows it. ``trust_remote_code`` stays off
    unless the caller turns it on. ``device_map`` (e.g. ``"auto"``) shards a large model
    over the available devices with accelerate.

    A checkpoint whose weights do not all load (missing or of another shape: transformers would
    leave them at their random initialisation) is refused with one line naming them, unless
    ``allow_partial_load``; the engine keeps the loading report (``engine.load_report``), which
    every record then carries. ``check`` runs :meth:`Engine.check_intact` once (the unpatched
    logit through hearlib's attention function equals the model's own).
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from hearlib.method.engine import Engine

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
    family = family_of(config, source=source)
    if resolution is None:
        resolution = checkpoint.resolution if checkpoint else family.resolution
    on_cpu = device is None or torch.device(device).type == "cpu"
    dtype = dtype or (torch.float32 if on_cpu and device_map is None else torch.bfloat16)
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        arguments = dict(dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map,
                         output_loading_info=True)
        try:
            model_obj, report = AutoModelForImageTextToText.from_pretrained(source, **arguments)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            # a weight of another shape: load again to learn which (transformers then leaves them
            # at their initialisation), and refuse below unless a partial load is allowed
            model_obj, report = AutoModelForImageTextToText.from_pretrained(source, ignore_mismatched_sizes=True,
                                                                            **arguments)
    except OSError as error:
        raise UserError(f"cannot load model {source}: {str(error).splitlines()[0]}") from None
    problem = loading_problem(report)
    if problem is not None and not allow_partial_load:
        raise UserError(f"refusing {source}: {problem}")
    if device is not None and device_map is None:
        model_obj = model_obj.to(device)
    engine = Engine(model_obj, processor, name=checkpoint.name if checkpoint else source, resolution=resolution)
    engine.load_report = {"partial": problem is not None, "problem": problem or "",
                          "missing": sorted(report.get("missing_keys") or ()),
                          "mismatched": sorted(str(k[0]) if isinstance(k, (tuple, list)) else str(k)
                                               for k in report.get("mismatched_keys") or ()),
                          "unexpected": sorted(report.get("unexpected_keys") or ())}
    if problem is not None:
        print(f"warning: {source} loaded partially (--allow-partial-load): {problem}", flush=True)
    if check:
        engine.check_intact()
    return engine
