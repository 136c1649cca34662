"""The organisms' training data: a scenes or DomainNet-layout folder read into memory (images as
uint8 tensors, labels per question type), the held-out split, and the augmentation for a user's photographs."""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.records.datasets import ImageRecord, load_domainnet

# question type -> its label key in record_labels (the scene labels)
LABEL_KEYS = {name: key for name, (_, key) in O.QUESTIONS.items()}


def record_labels(r: ImageRecord) -> dict:
    out = {"object": r.label}
    if r.supercategory:
        out["supercategory"] = r.supercategory
    for k in ("color", "position"):
        if k in r.extra:
            out[k] = r.extra[k]
    return out


def load_images(records: list[ImageRecord], progress: bool = True, size: int | None = None) -> torch.Tensor:
    """uint8 [N, 3, S, S]: resized (shortest edge, bicubic) and centre-cropped like the processor."""
    from PIL import Image
    from tqdm import tqdm
    S = size or O.IMAGE_SIZE
    out = torch.empty((len(records), 3, S, S), dtype=torch.uint8)
    for i, r in enumerate(tqdm(records, desc="loading images", disable=not progress, leave=False)):
        with Image.open(r.path) as im:
            im = im.convert("RGB")
            if im.size != (S, S):
                w, h = im.size
                k = S / min(w, h)
                im = im.resize((max(S, round(w * k)), max(S, round(h * k))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - S) // 2, (h - S) // 2
                im = im.crop((left, top, left + S, top + S))
            out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


_MEAN = torch.tensor(O.CLIP_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(O.CLIP_STD).view(1, 3, 1, 1)


def normalize(images_u8: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - _MEAN) / _STD


class Data:
    """Images in memory plus, per question type, the label index of each image."""

    def __init__(self, records: list[ImageRecord], images: torch.Tensor, questions: list[str]):
        self.records, self.images, self.questions = records, images, questions
        self.labels = {q: [record_labels(r).get(LABEL_KEYS[q]) for r in records] for q in questions}
        self.domains = [r.domain or "all" for r in records]
        self.patch_cover = patch_cover(records)


def patch_cover(records: list[ImageRecord]) -> torch.Tensor | None:
    """Fraction of each patch covered by the main object [N, P] (generated scenes only, else None).

    The geometry of a scene is the same in every style, so it is recomputed from (seed, scene id)."""
    from hearlib.organism import scenes
    if not records or not all("scene_id" in r.extra and "seed" in r.extra for r in records):
        return None
    g = O.IMAGE_SIZE // O.PATCH_SIZE
    cache = {}
    out = torch.empty((len(records), g * g))
    for i, r in enumerate(records):
        key = (r.extra["seed"], r.extra["scene_id"])
        if key not in cache:
            m = scenes.object_mask(scenes.make_scene(*key).main, O.IMAGE_SIZE).astype(np.float32)
            cache[key] = torch.from_numpy(m.reshape(g, O.PATCH_SIZE, g, O.PATCH_SIZE).mean((1, 3)).reshape(-1))
        out[i] = cache[key]
    return out


def augmenter(size: int):
    """Training augmentation for a user's photographs: random resized crop, horizontal flip,
    colour jitter (torchvision.transforms.v2), drawn per image. Not used on generated scenes,
    whose position answers a flip or crop would change."""
    from torchvision.transforms import v2
    t = v2.Compose([v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                    v2.ColorJitter(0.3, 0.3, 0.3, 0.03)])
    return lambda batch_u8: torch.stack([t(im) for im in batch_u8])


def prepare_data(data_dir: Path, heldout_dir: Path | None, seed: int, holdout_frac: float, limit: int | None,
                 progress: bool):
    """(training records, held-out records, question types, answer vocabulary per type) of a folder."""
    records = load_domainnet(data_dir)
    has_labels = any("color" in r.extra for r in records)
    questions = list(O.QUESTIONS) if has_labels else ["object"]
    if heldout_dir is not None:
        held = load_domainnet(heldout_dir)
        train = records
    else:
        train, held = split(records, seed, holdout_frac)
    if limit:
        rng = random.Random(seed + 1)
        train = rng.sample(train, min(limit, len(train)))
    for r in train + held:
        for ch in "-' ":
            if ch in r.label:
                raise UserError(f"class folder {r.label!r} is not a single word; rename it (e.g. with '_')")
    vocab = {}
    for q in questions:
        vocab[q] = sorted({record_labels(r).get(LABEL_KEYS[q]) for r in train + held} - {None})
    return train, held, questions, vocab


def split(records: list[ImageRecord], seed: int, holdout_frac: float):
    """(kept, held out): a seeded split by image (by scene id for generated data, so that no scene
    is on both sides), stratified by (domain, class) so that every domain and class is held out."""
    rng = random.Random(seed)
    first = {}
    for r in records:
        first.setdefault(r.extra.get("scene_id", r.image_id), r)
    strata = defaultdict(list)
    for key, r in first.items():
        strata[(None if "scene_id" in r.extra else r.domain, r.label)].append(key)
    cut = set()
    for stratum in sorted(strata, key=str):
        keys = sorted(strata[stratum], key=str)
        rng.shuffle(keys)
        if len(keys) >= 2:
            cut.update(keys[:max(1, round(len(keys) * holdout_frac))])
    held = [r for r in records if r.extra.get("scene_id", r.image_id) in cut]
    train = [r for r in records if r.extra.get("scene_id", r.image_id) not in cut]
    return train, held
