"""Seeded, deterministic generator of synthetic scenes in COCO and DomainNet layout.

Each scene has one main object (one of :data:`CATEGORIES`, 12 categories in 4
super-categories), a textured background and a few smaller distractor objects
(generic shapes: ball, box, cone, star). Appearance varies independently of the
category: colour (one of :data:`COLORS`, jittered), size, position (one of
:data:`POSITIONS`, the object sits anywhere inside that region), rotation, mirror,
background texture and distractors. Every scene is rendered in three styles
(:data:`STYLES`): ``real`` (shaded, textured, photographic-ish background, drop
shadow, sensor noise), ``sketch`` (coloured-pencil line drawing on paper) and
``clipart`` (flat colours with black outlines).

``python -m hearlib scenes --out DIR --n N --seed S`` writes

* ``DIR/coco/images/<scene>.png`` and ``DIR/coco/annotations/instances.json``: the
  ``real`` style (the photographic analogue of COCO), in COCO instance format
  (images, annotations with bbox, area, segmentation polygons, iscrowd, categories
  with ``name`` and ``supercategory``). The main object and the distractors are
  annotated; the main object's annotation has ``"main": true`` and each image has
  the extra fields ``style``, ``scene_id``, ``main_category``, ``main_color``,
  ``main_position``.
* ``DIR/domains/<style>/<class>/<scene>.png``: all three styles in DomainNet layout.
* ``DIR/labels.json``: per image (path relative to ``DIR``) the labels of every
  question type (object, super-category, colour, position) and its style.

Layout ``marked`` (``--layout marked``; issue 27): two objects of the 12 categories, of similar
size, distinct colours and on two distinct sides, both drawn alike, and a small black star (the
marker) beside one of them; that one is the main object and answers every question. No layer-0
summary of the scene says which object is meant: the relation to the marker must be read.

Scene ``i`` of seed ``s`` is drawn from ``numpy.random.SeedSequence([s, i])``, so a
scene depends only on ``(seed, index)``, never on ``n`` or on the order of
rendering. The organisms are trained on seed :data:`TRAIN_SEED` and evaluated on
seed :data:`HELDOUT_SEED`; any seed other than ``TRAIN_SEED`` gives held-out scenes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hearlib.errors import UserError
from hearlib.organism.shapes import SHAPES

TRAIN_SEED = 0
HELDOUT_SEED = 1
IMAGE_SIZE = 64
SUPERSAMPLE = 4

SUPERCATEGORIES = {
    "vehicle": ("car", "boat", "plane"),
    "animal": ("fish", "bird", "cat"),
    "food": ("apple", "banana", "pizza"),
    "furniture": ("chair", "table", "lamp"),
}
CATEGORIES = tuple(c for cats in SUPERCATEGORIES.values() for c in cats)
SUPERCATEGORY_OF = {c: s for s, cats in SUPERCATEGORIES.items() for c in cats}
DISTRACTORS = ("ball", "box", "cone", "star")
STYLES = ("real", "sketch", "clipart")
COLORS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
}
POSITIONS = ("left", "right", "top", "bottom", "centre")
SIDES = POSITIONS[:4]
LAYOUTS = ("single", "marked")
MARKER_COLOR = (25, 25, 25)
TEXTURES = ("noise", "stripes", "dots", "gradient", "checker")


# --------------------------------------------------------------------------- scene spec
@dataclass
class Placed:
    """One object placed in a scene: category, colour, centre (image fractions), scale, angle."""
    category: str
    color: tuple[int, int, int]
    cx: float
    cy: float
    scale: float
    angle: float
    mirror: bool
    color_name: str = ""

    def polygons(self, size: float) -> list[tuple[str, list[tuple[float, float]]]]:
        """Parts transformed into pixel coordinates of an image ``size`` wide."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        out = []
        for role, pts in SHAPES[self.category]:
            tp = []
            for x, y in pts:
                if self.mirror:
                    x = -x
                xr, yr = c * x - s * y, s * x + c * y
                tp.append(((self.cx + self.scale * xr) * size, (self.cy + self.scale * yr) * size))
            out.append((role, tp))
        return out


@dataclass
class Scene:
    scene_id: int
    seed: int
    main: Placed
    position: str
    distractors: list[Placed]
    texture: str
    bg_seed: int
    bg_hue: float
    light_angle: float
    extra: dict = field(default_factory=dict)
    others: list[Placed] = field(default_factory=list)     # drawn like the main object (layout marked)
    marker: Placed | None = None                           # the star beside the main object (layout marked)
    layout: str = "single"

    @property
    def category(self) -> str:
        return self.main.category

    @property
    def supercategory(self) -> str:
        return SUPERCATEGORY_OF[self.main.category]

    @property
    def color(self) -> str:
        return self.main.color_name

    def labels(self) -> dict:
        return {"object": self.category, "supercategory": self.supercategory,
                "color": self.color, "position": self.position}


def _jitter(rng, rgb, amount=18):
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)


def _sample_offset(rng, position):
    if position == "centre":
        return rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    major = rng.uniform(0.16, 0.26)
    minor = rng.uniform(-0.45, 0.45) * major
    sign = -1 if position in ("left", "top") else 1
    if position in ("left", "right"):
        return sign * major, minor
    return minor, sign * major


def make_scene(seed: int, index: int, layout: str = "single") -> Scene:
    """The scene ``index`` of ``seed`` in ``layout``: depends only on these three values."""
    if layout == "marked":
        return _marked_scene(seed, index)
    if layout != "single":
        raise UserError(f"unknown scene layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    category = CATEGORIES[rng.integers(len(CATEGORIES))]
    color_name = list(COLORS)[rng.integers(len(COLORS))]
    position = POSITIONS[rng.integers(len(POSITIONS))]
    dx, dy = _sample_offset(rng, position)
    reach = max(abs(dx), abs(dy))
    scale = rng.uniform(0.2, min(0.36, 0.56 - reach))
    main = Placed(category, _jitter(rng, COLORS[color_name]), 0.5 + dx, 0.5 + dy, scale,
                  math.radians(rng.uniform(-25, 25)), bool(rng.integers(2)), color_name)
    distractors = []
    n_distract = int(rng.integers(1, 4))
    tries = 0
    while len(distractors) < n_distract and tries < 40:
        tries += 1
        ds = rng.uniform(0.05, 0.09)
        x, y = rng.uniform(0.08, 0.92), rng.uniform(0.08, 0.92)
        # keep distractors off the main object and off each other
        if math.hypot(x - main.cx, y - main.cy) < main.scale + ds + 0.02:
            continue
        if any(math.hypot(x - d.cx, y - d.cy) < d.scale + ds + 0.02 for d in distractors):
            continue
        dname = DISTRACTORS[rng.integers(len(DISTRACTORS))]
        dcol = tuple(int(v) for v in rng.integers(40, 230, size=3))
        distractors.append(Placed(dname, dcol, x, y, ds, math.radians(rng.uniform(-40, 40)), False))
    return Scene(scene_id=int(index), seed=int(seed), main=main, position=position,
                 distractors=distractors, texture=TEXTURES[rng.integers(len(TEXTURES))],
                 bg_seed=int(rng.integers(2**31 - 1)), bg_hue=float(rng.uniform(0, 1)),
                 light_angle=float(rng.uniform(0, 2 * math.pi)))


def _marked_scene(seed: int, index: int) -> Scene:
    """Two similar objects on two sides, a marker beside the main one (see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    first, second = rng.choice(len(CATEGORIES), size=2, replace=False)
    colours = rng.choice(len(COLORS), size=2, replace=False)
    objects, sides = [], []
    for attempt in range(60):
        sides = [SIDES[k] for k in rng.choice(len(SIDES), size=2, replace=False)]
        scales = rng.uniform(0.15, 0.21, size=2)
        offsets = [_sample_offset(rng, side) for side in sides]
        centres = [(0.5 + dx, 0.5 + dy) for dx, dy in offsets]
        gap = math.dist(*centres) - scales.sum()
        if gap > 0.04 and all(0.5 - max(abs(dx), abs(dy)) - sc > -0.02 for (dx, dy), sc in zip(offsets, scales)):
            break
    for k, category in enumerate((first, second)):
        name = list(COLORS)[colours[k]]
        objects.append(Placed(CATEGORIES[category], _jitter(rng, COLORS[name]), *centres[k], float(scales[k]),
                              math.radians(rng.uniform(-25, 25)), bool(rng.integers(2)), name))
    main_index = int(rng.integers(2))
    main, other = objects[main_index], objects[1 - main_index]
    marker_scale = 0.06
    angle = 0.0
    for attempt in range(60):       # beside the main object, inside the image, away from the other
        angle = rng.uniform(0, 2 * math.pi)
        reach = main.scale + marker_scale + 0.03
        x, y = main.cx + reach * math.cos(angle), main.cy + reach * math.sin(angle)
        inside = marker_scale < x < 1 - marker_scale and marker_scale < y < 1 - marker_scale
        if inside and math.dist((x, y), (other.cx, other.cy)) > other.scale + marker_scale + 0.12:
            break
    marker = Placed("star", MARKER_COLOR, x, y, marker_scale, math.radians(rng.uniform(-30, 30)), False, "black")
    return Scene(scene_id=int(index), seed=int(seed), main=main, position=sides[main_index], distractors=[],
                 texture=TEXTURES[rng.integers(len(TEXTURES))], bg_seed=int(rng.integers(2**31 - 1)),
                 bg_hue=float(rng.uniform(0, 1)), light_angle=float(rng.uniform(0, 2 * math.pi)),
                 others=[other], marker=marker, layout="marked")


# --------------------------------------------------------------------------- rendering
def _hsv(h, s, v):
    import colorsys
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _smooth_noise(rng, size, cells):
    low = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    img = Image.fromarray(((low + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


def _texture_mask(texture, rng, size):
    """A [size, size] float pattern in [0, 1] for the background texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if texture == "noise":
        return 0.5 + 0.5 * _smooth_noise(rng, size, int(rng.integers(4, 9)))
    if texture == "stripes":
        a = rng.uniform(0, math.pi)
        f = rng.uniform(4, 9)
        return (np.sin(2 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a))) > 0).astype(np.float32)
    if texture == "dots":
        f = rng.uniform(4, 8)
        return ((np.sin(2 * math.pi * f * xx) * np.sin(2 * math.pi * f * yy)) > 0.55).astype(np.float32)
    if texture == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        g = xx * math.cos(a) + yy * math.sin(a)
        return (g - g.min()) / (g.max() - g.min() + 1e-6)
    f = int(rng.integers(3, 7))
    return ((np.floor(xx * f) + np.floor(yy * f)) % 2).astype(np.float32)


def _background(scene: Scene, style: str, size: int) -> np.ndarray:
    rng = np.random.default_rng(scene.bg_seed)
    pattern = _texture_mask(scene.texture, rng, size)[..., None]
    if style == "real":
        c1 = np.array(_hsv(scene.bg_hue, 0.25, 0.75), np.float32)
        c2 = np.array(_hsv(scene.bg_hue + 0.08, 0.35, 0.5), np.float32)
        img = c1 * (1 - 0.45 * pattern) + c2 * 0.45 * pattern
        img = img + 22 * _smooth_noise(rng, size, 16)[..., None]          # lighting blotches
        yy = np.linspace(-1, 1, size, dtype=np.float32)[:, None, None]
        img = img * (1.0 - 0.15 * yy)                                       # vignette-ish light
        return img
    if style == "sketch":
        paper = np.array([244, 239, 226], np.float32) + rng.uniform(-6, 6, 3).astype(np.float32)
        img = np.broadcast_to(paper, (size, size, 3)).astype(np.float32).copy()
        # faint pencil hatching of the pattern's edges
        edge = np.abs(np.diff(pattern[..., 0], axis=1, append=pattern[:, -1:, 0]))
        edge = edge + np.abs(np.diff(pattern[..., 0], axis=0, append=pattern[-1:, :, 0]))
        img -= 45 * np.clip(edge * (3 if scene.texture in ("noise", "gradient") else 1), 0, 1)[..., None]
        return img
    # clipart: flat pastel with a flat pattern
    c1 = np.array(_hsv(scene.bg_hue, 0.18, 0.97), np.float32)
    c2 = np.array(_hsv(scene.bg_hue, 0.3, 0.9), np.float32)
    p = (pattern > 0.5).astype(np.float32)
    return c1 * (1 - p) + c2 * p


def _shade(rgb, role):
    if role == "dark":
        return (45, 40, 40)
    if role == "light":
        return (225, 235, 245)
    return rgb


def _draw_object(canvas: Image.Image, obj: Placed, style: str, size: int, light_angle: float,
                 rng: np.random.Generator, is_main: bool) -> Image.Image:
    parts = obj.polygons(size)
    lw = max(1, int(round(size / IMAGE_SIZE * (1.6 if is_main else 1.0))))
    if style == "sketch":
        draw = ImageDraw.Draw(canvas)
        stroke = obj.color if is_main else (110, 110, 110)
        for role, pts in parts:
            col = stroke if role == "body" or not is_main else (60, 55, 55)
            for k in range(2):  # two slightly offset pencil passes
                off = rng.normal(0, size / IMAGE_SIZE * 0.35, size=2)
                p = [(x + off[0], y + off[1]) for x, y in pts]
                draw.line(p + [p[0]], fill=col, width=lw, joint="curve")
        return canvas
    if style == "clipart":
        draw = ImageDraw.Draw(canvas)
        for role, pts in parts:
            draw.polygon(pts, fill=_shade(obj.color, role), outline=(20, 20, 20), width=lw)
        return canvas
    # real: drop shadow, then shaded fill with highlight; computed on the object's crop only
    allpts = [pt for _, pts in parts for pt in pts]
    pad = int(size * 0.06) + 2
    x0 = max(0, int(min(p[0] for p in allpts)) - pad)
    y0 = max(0, int(min(p[1] for p in allpts)) - pad)
    x1 = min(size, int(max(p[0] for p in allpts)) + pad + 1)
    y1 = min(size, int(max(p[1] for p in allpts)) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return canvas
    w, h = x1 - x0, y1 - y0
    local = [(role, [(x - x0, y - y0) for x, y in pts]) for role, pts in parts]
    mask = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask)
    colour = Image.new("RGB", (w, h))
    cdraw = ImageDraw.Draw(colour)
    for role, pts in local:
        mdraw.polygon(pts, fill=255)
        cdraw.polygon(pts, fill=_shade(obj.color, role))
    off = int(size * 0.03)
    shadow = mask.transform(mask.size, Image.AFFINE, (1, 0, -off, 0, 1, -off)).filter(
        ImageFilter.BoxBlur(size * 0.02))
    arr = np.asarray(canvas, np.float32).copy()
    crop = arr[y0:y1, x0:x1]
    sh = np.asarray(shadow, np.float32)[..., None] / 255.0
    crop *= (1 - 0.45 * sh)
    col = np.asarray(colour, np.float32)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cx, cy, r = obj.cx * size, obj.cy * size, max(obj.scale * size, 1.0)
    d = ((xx - cx) * math.cos(light_angle) + (yy - cy) * math.sin(light_angle)) / r
    shade = np.clip(1.0 - 0.28 * d, 0.6, 1.3)[..., None]
    spec = np.exp(-(((xx - cx + 0.35 * r * math.cos(light_angle)) ** 2 +
                     (yy - cy + 0.35 * r * math.sin(light_angle)) ** 2) / (0.08 * r * r)))[..., None]
    col = col * shade + 70 * spec
    col += rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    m = np.asarray(mask, np.float32)[..., None] / 255.0
    arr[y0:y1, x0:x1] = crop * (1 - m) + col * m
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render(scene: Scene, style: str, size: int = IMAGE_SIZE) -> Image.Image:
    """The scene drawn in ``style`` as a ``size``×``size`` RGB image (supersampled)."""
    if style not in STYLES:
        raise UserError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    big = size * SUPERSAMPLE
    rng = np.random.default_rng([scene.bg_seed, STYLES.index(style)])
    bg = _background(scene, style, big)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    for d in scene.distractors:
        canvas = _draw_object(canvas, d, style, big, scene.light_angle, rng, False)
    for obj in scene.others + ([scene.marker] if scene.marker is not None else []):
        canvas = _draw_object(canvas, obj, style, big, scene.light_angle, rng, True)
    canvas = _draw_object(canvas, scene.main, style, big, scene.light_angle, rng, True)
    img = canvas.resize((size, size), Image.LANCZOS)
    if style == "real":
        arr = np.asarray(img, np.float32) + rng.normal(0, 4, size=(size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


# --------------------------------------------------------------------------- annotations
def object_mask(obj: Placed, size: int) -> np.ndarray:
    """bool [size, size]: the pixels an object covers (before anything drawn above it)."""
    m = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    d = ImageDraw.Draw(m)
    for _, pts in obj.polygons(size * SUPERSAMPLE):
        d.polygon(pts, fill=255)
    return np.asarray(m.resize((size, size), Image.BILINEAR)) >= 128


def annotate(scene: Scene, image_id: int, first_ann_id: int, cat_ids: dict, size: int = IMAGE_SIZE) -> list[dict]:
    """COCO annotations of the main object (``main: true``) and the distractors."""
    anns = []
    occupied = np.zeros((size, size), bool)
    # main object is drawn last (on top); distractors are clipped by what lies above them
    above = ([scene.marker] if scene.marker is not None else []) + scene.others[::-1]
    for k, obj in enumerate([scene.main] + above + scene.distractors[::-1]):
        m = object_mask(obj, size) & ~occupied
        occupied |= m
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        seg = []
        for _, pts in obj.polygons(size):
            flat = []
            for x, y in pts:
                flat += [round(float(np.clip(x, 0, size)), 2), round(float(np.clip(y, 0, size)), 2)]
            seg.append(flat)
        ann = {"id": first_ann_id + len(anns), "image_id": image_id, "category_id": cat_ids[obj.category],
               "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": float(m.sum()),
               "segmentation": seg, "iscrowd": 0, "main": k == 0}
        if k == 0:
            ann["color"] = scene.color
            ann["position"] = scene.position
        anns.append(ann)
    return anns


def categories() -> list[dict]:
    cats = [{"id": i + 1, "name": c, "supercategory": SUPERCATEGORY_OF[c]} for i, c in enumerate(CATEGORIES)]
    cats += [{"id": len(CATEGORIES) + i + 1, "name": d, "supercategory": "shape"} for i, d in enumerate(DISTRACTORS)]
    return cats


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _render_chunk(args):
    seed, indices, out, layout = args
    out = Path(out)
    for i in indices:
        scene = make_scene(seed, i, layout)
        name = f"{seed:04d}_{i:06d}.png"
        for style in STYLES:
            img = render(scene, style)
            path = out / "domains" / style / scene.category / name
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, optimize=False, compress_level=1)
        _link_or_copy(out / "domains" / "real" / scene.category / name, out / "coco" / "images" / name)
    return len(indices)


def generate(out: Path | str, n: int, seed: int = TRAIN_SEED, workers: int = 1, progress: bool = True,
             layout: str = "single") -> Path:
    """Write ``n`` scenes of ``seed`` in ``layout`` into ``out`` (COCO + DomainNet layout + labels.json)."""
    out = Path(out)
    if layout not in LAYOUTS:
        raise UserError(f"unknown scene layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if n <= 0:
        raise UserError(f"--n must be a positive number of scenes, got {n}")
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    (out / "coco" / "images").mkdir(parents=True, exist_ok=True)
    (out / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
    chunks = [(seed, list(range(k, min(n, k + 256))), str(out), layout) for k in range(0, n, 256)]
    from tqdm import tqdm
    bar = tqdm(total=n, desc=f"scenes seed {seed}", unit="scene", disable=not progress)
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers) as pool:
            for done in pool.imap_unordered(_render_chunk, chunks):
                bar.update(done)
    else:
        for c in chunks:
            bar.update(_render_chunk(c))
    bar.close()

    cats = categories()
    cat_ids = {c["name"]: c["id"] for c in cats}
    images, anns, labels = [], [], {}
    for i in range(n):
        scene = make_scene(seed, i, layout)
        name = f"{seed:04d}_{i:06d}.png"
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                       "license": 0, "style": "real", "scene_id": i, "seed": seed,
                       "main_category": scene.category, "main_color": scene.color,
                       "main_position": scene.position})
        anns += annotate(scene, image_id, len(anns) + 1, cat_ids)
        for style in STYLES:
            labels[f"domains/{style}/{scene.category}/{name}"] = {**scene.labels(), "style": style,
                                                                   "scene_id": i, "seed": seed,
                                                                   **({"layout": layout} if layout != "single" else {})}
    coco = {"info": {"description": f"hearlib synthetic scenes, seed {seed}", "version": "1",
                     "year": 2026, "contributor": "hearlib.organism.scenes"},
            "licenses": [{"id": 0, "name": "generated by hearlib (public domain)", "url": ""}],
            "images": images, "annotations": anns, "categories": cats}
    (out / "coco" / "annotations" / "instances.json").write_text(json.dumps(coco))
    (out / "labels.json").write_text(json.dumps({"seed": seed, "n": n, "styles": list(STYLES),
                                                 **({"layout": layout} if layout != "single" else {}),
                                                 "images": labels}, indent=0))
    return out
