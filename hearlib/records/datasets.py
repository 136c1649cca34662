"""Loaders for COCO-format and DomainNet-layout image folders, with one API.

Both return a list of :class:`ImageRecord` (path, answer label, super-category, domain,
image id, extra fields). They read the real datasets (COCO 2017, DomainNet) as well as
the synthetic scenes of :mod:`hearlib.organism.scenes`; nothing is downloaded.

Single-main-object rule (:func:`main_object`, used by :func:`load_coco` with
``single_main_object=True``): an image is kept, labelled with the category of its
largest annotation, when

1. it has at least one non-crowd instance annotation;
2. the largest non-crowd instance covers at least ``min_area_frac`` (default 5%) of the
   image (area of its segmentation, COCO's ``area`` field);
3. every instance of a *different* category, crowd regions included, is at most
   ``1 / dominance`` (default 1/2) of the largest one's area; other instances of the
   *same* category do not matter, since they do not change the answer word.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hearlib.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_AREA_FRAC = 0.05
DOMINANCE = 2.0


@dataclass
class ImageRecord:
    """One image with its answer word. ``extra`` holds dataset-specific fields
    (COCO: annotation id, bbox, area, other labels; scenes: colour, position, style)."""
    path: Path
    label: str
    supercategory: str | None = None
    domain: str | None = None
    image_id: str = ""
    extra: dict = field(default_factory=dict)


def main_object(anns: list[dict], width: int, height: int, min_area_frac: float = MIN_AREA_FRAC,
                dominance: float = DOMINANCE) -> dict | None:
    """The main object's annotation under the single-main-object rule, or ``None``."""
    solid = [a for a in anns if not a.get("iscrowd", 0)]
    if not solid:
        return None
    largest = max(solid, key=lambda a: a["area"])
    if largest["area"] < min_area_frac * width * height:
        return None
    for a in anns:
        if a is largest or a["category_id"] == largest["category_id"]:
            continue
        if a["area"] * dominance > largest["area"]:
            return None
    return largest


def coco_splits(root) -> list[str]:
    """Splits of a COCO folder: the ``<split>`` of every ``annotations/instances_<split>.json``,
    validation splits first (``["val2017", "train2017"]`` for a COCO 2017 folder with both)."""
    folder = Path(root) / "annotations"
    found = [f.stem[len("instances_"):] for f in folder.glob("instances_*.json")] if folder.is_dir() else []
    return sorted(found, key=lambda s: (not s.startswith("val"), s))


def _coco_files(root_or_annotation_file, images_dir, split):
    """(annotation file, image folder) of a COCO annotation file or folder; see :func:`load_coco`."""
    p = Path(root_or_annotation_file)
    if not p.exists():
        raise UserError(f"COCO folder or annotation file {p} does not exist "
                        "(see docs/ORGANISM.md for where to get COCO 2017)")
    if p.is_file():
        ann = p
        root = p.parent.parent if p.parent.name == "annotations" else p.parent
        stem_split = p.stem[len("instances_"):] if p.stem.startswith("instances_") else None
        guesses = [root / s for s in (split, stem_split) if s] + [root / "images" / s for s in (split, stem_split) if s]
        guesses += [root / "images", p.parent]
        images = Path(images_dir) if images_dir else next((g for g in guesses if g.is_dir()), guesses[0])
        return ann, _check_images(images)
    candidates = [p / "annotations" / f"instances_{split}.json"] if split else []
    # the project's scenes (instances.json), else real COCO: validation split first
    candidates += [p / "annotations" / "instances.json", p / "coco" / "annotations" / "instances.json"]
    if not split:
        candidates += [p / "annotations" / f"instances_{s}.json" for s in coco_splits(p)]
    ann = next((c for c in candidates if c.exists()), None)
    if ann is None:
        looked = ", ".join(str(c) for c in candidates) or f"{p / 'annotations'}/instances*.json"
        raise UserError(f"no COCO annotation file in {p}: looked for {looked}")
    chosen = ann.stem[len("instances_"):] if ann.stem.startswith("instances_") else None
    if images_dir:
        images = Path(images_dir)
    elif chosen:
        guesses = [p / chosen, p / "images" / chosen, p / "images"]
        images = next((g for g in guesses if g.is_dir()), guesses[0])
    else:
        images = ann.parent.parent / "images"
    return ann, _check_images(images)


def _check_images(images: Path) -> Path:
    if not images.is_dir():
        raise UserError(f"COCO image folder {images} does not exist (pass images_dir=...)")
    return images


def load_coco(root_or_annotation_file, images_dir=None, split: str | None = None,
              single_main_object: bool = True, min_area_frac: float = MIN_AREA_FRAC,
              dominance: float = DOMINANCE, categories: list[str] | None = None,
              styles: list[str] | None = None, limit: int | None = None) -> list[ImageRecord]:
    """Images of a COCO-format dataset through pycocotools.

    ``root_or_annotation_file``: an ``instances*.json`` file, or a folder holding
    ``annotations/instances_<split>.json`` with images in ``<root>/<split>`` (COCO 2017 as
    distributed: ``annotations/instances_val2017.json`` beside ``val2017/``, or train2017), or
    ``annotations/instances.json`` with images in ``<root>/images``, or a folder made by
    ``python -m hearlib scenes`` (its ``coco/`` subfolder). Without ``split``: ``instances.json``
    if present, else the first of :func:`coco_splits` (val2017 before train2017).
    Labels are COCO category names as written, several words included (``"fire hydrant"``).
    With ``single_main_object`` only images passing the rule of the module docstring are
    returned, labelled with the main object's category; without it, every image with at
    least one annotation, labelled with its largest annotation's category.
    """
    from pycocotools.coco import COCO
    import contextlib
    import io

    ann_file, images = _coco_files(root_or_annotation_file, images_dir, split)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco = COCO(str(ann_file))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserError(f"{ann_file} is not a COCO instance annotation file: {error}") from None
    cats = {c["id"]: c for c in coco.loadCats(coco.getCatIds())}
    records = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        if styles is not None and info.get("style", "real") not in styles:
            continue
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None))
        if single_main_object:
            main = main_object(anns, info["width"], info["height"], min_area_frac, dominance)
        else:
            solid = [a for a in anns if not a.get("iscrowd", 0)] or anns
            main = max(solid, key=lambda a: a["area"]) if solid else None
        if main is None:
            continue
        cat = cats[main["category_id"]]
        if categories is not None and cat["name"] not in categories:
            continue
        extra = {"annotation_id": main["id"], "bbox": main["bbox"], "area": main["area"],
                 "area_frac": main["area"] / (info["width"] * info["height"]),
                 "n_annotations": len(anns), "width": info["width"], "height": info["height"]}
        for key in ("style", "scene_id", "seed", "main_color", "main_position"):
            if key in info:
                extra[key.replace("main_", "")] = info[key]
        records.append(ImageRecord(path=images / info["file_name"], label=cat["name"],
                                   supercategory=cat.get("supercategory"),
                                   domain=info.get("style", "coco"), image_id=str(img_id), extra=extra))
        if limit is not None and len(records) >= limit:
            break
    return records


def load_domainnet(root, domains: list[str] | None = None, classes: list[str] | None = None,
                   limit_per_class: int | None = None) -> list[ImageRecord]:
    """Images of a ``<root>/<domain>/<class>/<image>`` folder (DomainNet's layout).

    A folder made by ``python -m hearlib scenes`` may be passed as is (its ``domains/``
    subfolder is used, and the labels of ``labels.json`` go into ``extra``:
    supercategory, color, position, style). Records are sorted by domain, class, file name.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"DomainNet-layout folder {root} does not exist "
                        "(see docs/ORGANISM.md for where to get DomainNet)")
    labels = {}
    base = root
    if (root / "domains").is_dir():
        base = root / "domains"
        if (root / "labels.json").exists():
            labels = json.loads((root / "labels.json").read_text())["images"]
    found = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if domains is not None:
        missing = [d for d in domains if d not in found]
        if missing:
            raise UserError(f"domain(s) {', '.join(missing)} not in {base} (found: {', '.join(found) or 'none'})")
        found = list(domains)
    records = []
    for domain in found:
        for cdir in sorted(d for d in (base / domain).iterdir() if d.is_dir()):
            if classes is not None and cdir.name not in classes:
                continue
            files = sorted(f for f in cdir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if limit_per_class is not None:
                files = files[:limit_per_class]
            for f in files:
                rel = f"domains/{domain}/{cdir.name}/{f.name}"
                lab = labels.get(rel, {})
                extra = {k: v for k, v in lab.items() if k not in ("object", "supercategory")}
                records.append(ImageRecord(path=f, label=cdir.name, supercategory=lab.get("supercategory"),
                                           domain=domain, image_id=f"{domain}/{cdir.name}/{f.stem}",
                                           extra=extra))
    if not records:
        raise UserError(f"no images found in {base} (expected <domain>/<class>/<image> files)")
    return records
