"""Mean image keys and values: the baseline that mean ablation substitutes.

For every decoder layer, key/value head and image position j, the average over R reference
images of that image's key (after rotary embedding) and value at j, with the same prompt
prefix. Saved as safetensors with the model's identity, input resolution and prompt-prefix
hash; :meth:`MeanKV.load` refuses a file that belongs to another model or prompt.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hearlib.errors import MeansMismatch, UserError
from hearlib.io import atomic_path

if TYPE_CHECKING:
    from hearlib.method.engine import Engine
    from hearlib.method.samples import Sample

FORMAT_VERSION = "1"


@dataclass
class MeanKV:
    k: torch.Tensor               # [L, KVH, P_img, D]
    v: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(self.meta.get("n_images", 0))

    # -- identity ----------------------------------------------------------------------
    @staticmethod
    def identity(engine: "Engine", prefix_hash: str) -> dict:
        return {
            "format": FORMAT_VERSION,
            "model": str(engine.name),
            "model_type": engine.model.config.model_type,
            "geometry": json.dumps([engine.n_layers, engine.n_heads, engine.n_kv_heads, engine.head_dim]),
            "weights": json.dumps(engine.weight_signature()),
            "resolution": json.dumps(list(engine.resolution) if engine.resolution else None),
            "prefix_hash": prefix_hash,
        }

    def check(self, engine: "Engine", sample: "Sample | None" = None, prompt: str | None = None) -> None:
        """Raise :class:`MeansMismatch` unless these means belong to ``engine`` and the prompt."""
        meta = self.meta
        problems = []
        if meta.get("model_type") != engine.model.config.model_type or meta.get("geometry") != json.dumps(
                [engine.n_layers, engine.n_heads, engine.n_kv_heads, engine.head_dim]):
            problems.append(f"it was computed for model {meta.get('model')!r} ({meta.get('model_type')}), "
                            f"not {engine.name!r}")
        else:
            saved = json.loads(meta.get("weights", "[]"))
            now = engine.weight_signature()
            if len(saved) != len(now) or any(abs(a - b) > 1e-2 * max(1.0, abs(b)) for a, b in zip(saved, now)):
                problems.append(f"it was computed for other weights ({meta.get('model')!r})")
        if meta.get("resolution") != json.dumps(list(engine.resolution) if engine.resolution else None):
            problems.append(f"its input resolution {meta.get('resolution')} differs from the engine's "
                            f"{list(engine.resolution) if engine.resolution else None}")
        prefix = sample.prefix_hash if sample is not None else (
            engine.prefix_hash(prompt) if prompt is not None else None)
        if prefix is not None and meta.get("prefix_hash") != prefix:
            problems.append("its prompt prefix (the tokens before the image, or the image token count) differs")
        expected = (engine.n_layers, engine.n_kv_heads)
        if tuple(self.k.shape[:2]) != expected or (sample is not None and self.k.shape[2] != sample.n_image):
            problems.append(f"its shape {tuple(self.k.shape)} does not fit this model and image size")
        if problems:
            source = meta.get("path", "mean keys/values")
            raise MeansMismatch(f"{source} cannot be used here: " + "; ".join(problems))

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write atomically (:func:`hearlib.io.atomic_path`: temporary file, then rename)."""
        path = Path(path)
        meta = {k: str(v) for k, v in self.meta.items() if k != "path"}
        with atomic_path(path) as tmp:
            save_file({"k": self.k.detach().float().contiguous().cpu(),
                       "v": self.v.detach().float().contiguous().cpu()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, engine: "Engine | None" = None, prompt: str | None = None) -> "MeanKV":
        """Load a means file; with ``engine`` (and ``prompt``), check that it belongs to them."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"means file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = dict(handle.metadata() or {})
                k, v = handle.get_tensor("k"), handle.get_tensor("v")
        except Exception as error:
            raise UserError(f"cannot read means file {path}: {error}") from None
        if meta.get("format") != FORMAT_VERSION:
            raise MeansMismatch(f"{path} is not a hearlib means file (format {meta.get('format')!r})")
        meta["path"] = str(path)
        means = cls(k, v, meta)
        if engine is not None:
            means.k, means.v = k.to(engine.device, engine.dtype), v.to(engine.device, engine.dtype)
            means.check(engine, prompt=prompt)
        return means


def compute_means(engine: "Engine", images: Iterable, prompt: str | None = None, *,
                  progress: bool = True, batch_size: int = 16) -> MeanKV:
    """Average the image keys/values of ``images`` (paths or PIL images) under ``prompt``.

    ``batch_size`` images go through one forward (the chat text rendered once, the processor
    called once per batch); ``batch_size=1`` is one prepared sample per image, as before. The
    sum runs image by image in float64 either way; out of memory, the batch is halved."""
    images = list(images)
    if not images:
        raise UserError("no reference images to compute means from")
    if int(batch_size) < 1:
        raise UserError("the means' batch size must be at least 1")
    total_k = total_v = None
    prefix_hash = None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(images), desc="mean keys/values", unit="image")
    start, step = 0, int(batch_size)
    while start < len(images):
        chunk = images[start:start + step]
        if len(chunk) == 1:
            sample = engine.prepare(chunk[0], prompt=prompt)
            k, v = engine.image_keys_values(sample)
            keys, values, digest = k[None], v[None], sample.prefix_hash
        else:
            try:
                keys, values, digest = engine.image_keys_values_many(chunk, prompt)
            except torch.OutOfMemoryError:        # a large model's attention scores: halve the batch
                step = max(1, step // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
        start += len(chunk)
        if prefix_hash is None:
            prefix_hash = digest
        elif digest != prefix_hash:
            raise UserError("reference images gave different image token counts; use one fixed resolution")
        for k, v in zip(keys, values):                    # one image at a time in float64
            total_k = k.double() if total_k is None else total_k + k.double()
            total_v = v.double() if total_v is None else total_v + v.double()
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    meta = MeanKV.identity(engine, prefix_hash)
    meta["n_images"] = str(len(images))
    return MeanKV((total_k / len(images)).to(engine.dtype), (total_v / len(images)).to(engine.dtype), meta)
