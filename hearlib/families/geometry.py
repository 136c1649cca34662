"""Where each image token of a sample lies in the input image, per model family.

Per-image-token values (θ^img, Eq. 13's ``w``) come in the order of
``sample.image_positions``. :func:`image_token_layout` tells, for one prepared sample,
which of those tokens cover which part of the image, through the ``layout`` function that
the family's record in :mod:`hearlib.families.registry` names:

* **LLaVA-1.5** (``llava``): one grid of ``(image_size/patch)²`` tokens (24×24 for the real
  model); the CLIP class token is dropped by the ``"default"`` feature strategy (kept, and
  listed as non-spatial ``"cls"``, with ``"full"``). The CLIP processor resizes the shortest
  edge and center-crops, so the grid covers the central crop of a non-square image.
* **LLaVA-NeXT** (``llava_next``, anyres): the base grid (the whole image, resized) first, then
  the high-resolution grid of the best-fitting pinpoint's tiles as ``pack_image_features``
  builds it: tiles joined into one grid, the padding rows/columns removed (``unpad_image``)
  and one ``image_newline`` token after each row (non-spatial ``"newline"``).
* **Qwen2-VL / Qwen2.5-VL**: one grid of ``(h/merge, w/merge)`` merged tokens, from
  ``image_grid_thw`` and ``spatial_merge_size``; the image is resized whole.
* **InternVL**: ``((image_size/patch)·downsample_ratio)²`` tokens per tile; one tile (the whole
  image, resized) unless the processor crops to patches, then the tiles row-major and a
  thumbnail of the whole image last. ``<img>``/``</img>`` are not image tokens.
* **Gemma 3** (``gemma3``): the SigLIP grid of ``(image_size/patch)²`` patches average-pooled to
  ``sqrt(mm_tokens_per_image)²`` tokens (16 × 16 for the real model) over the whole image, resized
  without a crop; pan-and-scan crops are refused. ``<start_of_image>``/``<end_of_image>`` are not
  image tokens.
* **LLaVA-OneVision** (``llava_onevision``): LLaVA-NeXT's anyres layout over a SigLIP tower (no
  class token, strategy ``"full"``); the ``anyres_max_9`` down-sizing of a large high-res grid is
  refused.
* **Mistral 3** (``mistral3``): one Pixtral grid of ``(h/patch/merge, w/patch/merge)`` tokens over
  the whole image; the ``[IMG_BREAK]`` after each row and ``[IMG_END]`` are not image tokens.
* **VideoLLaMA 3** (``video_llama_3``): one grid of ``image_grid_thw`` patches (no merge for
  images) over the whole resized image.
* **DeepSeek-VL** (``deepseek_vl``): one SigLIP grid over the whole (square) image.
* **Aya Vision / Command A Vision / Idefics3 / SmolVLM** (tiled): per-tile grids row-major, the
  global view or thumbnail last; tile, row/column and start/end marker tokens are not image tokens.
* **PaliGemma** (``paligemma``): one SigLIP grid of ``(image_size/patch)²`` tokens over the whole
  image, resized without a crop.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the image the processor received
(``layout.image_size``, i.e. after the engine's own resize); :func:`draw_over_image` rescales
them to the image it draws, which is right because the engine resizes the whole image.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from hearlib.errors import UnsupportedModel, UserError

__all__ = ["Panel", "TokenLayout", "image_token_layout", "to_maps", "draw_over_image"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Panel:
    """One grid of image tokens: ``tokens[r, c]`` indexes the image-token vector (-1 = none)."""

    name: str
    tokens: np.ndarray
    box: Box

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.tokens.shape)

    def cell_boxes(self) -> np.ndarray:
        """[rows, cols, 4] box (x0, y0, x1, y1) of each cell."""
        rows, cols = self.shape
        x0, y0, x1, y1 = self.box
        xs, ys = np.linspace(x0, x1, cols + 1), np.linspace(y0, y1, rows + 1)
        out = np.empty((rows, cols, 4))
        out[..., 0], out[..., 2] = xs[None, :-1], xs[None, 1:]
        out[..., 1], out[..., 3] = ys[:-1, None], ys[1:, None]
        return out


@dataclass(frozen=True)
class TokenLayout:
    """The image tokens of one sample: spatial panels and non-spatial tokens by kind."""

    model_type: str
    n_tokens: int
    image_size: tuple[int, int]                       # (width, height) the boxes refer to
    panels: tuple[Panel, ...]
    non_spatial: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def non_spatial_indices(self) -> np.ndarray:
        """Sorted indices of every non-spatial token."""
        return np.array(sorted(i for group in self.non_spatial.values() for i in group), dtype=np.int64)

    def panel(self, name: str) -> Panel:
        for p in self.panels:
            if p.name == name:
                return p
        raise KeyError(f"no panel {name!r}; panels: {[p.name for p in self.panels]}")

    def finest(self) -> list[str]:
        """Names of panels that do not overlap, finest cells first, ties in panel order (what one
        Axes can show): InternVL tiles + thumbnail -> the tiles; LLaVA-NeXT -> the high-res grid
        if finer, else the base (at 336×336 both are 24×24 over the whole image)."""
        def cell_area(p: Panel) -> float:
            x0, y0, x1, y1 = p.box
            return (x1 - x0) * (y1 - y0) / max(p.tokens.size, 1)

        chosen: list[Panel] = []
        for p in sorted(self.panels, key=cell_area):
            if not any(_overlap(p.box, q.box) for q in chosen):
                chosen.append(p)
        return [p.name for p in self.panels if p in chosen]

    def check(self) -> None:
        """Raise ValueError unless every token 0..n_tokens-1 appears exactly once."""
        parts = [p.tokens[p.tokens >= 0].ravel() for p in self.panels] + [self.non_spatial_indices]
        seen = np.sort(np.concatenate(parts).astype(np.int64))
        if not np.array_equal(seen, np.arange(self.n_tokens)):
            raise ValueError(f"layout does not cover tokens 0..{self.n_tokens - 1} exactly once")

    # -- JSON (store meta) -----------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready form; a regular panel (start + r·row_stride + c) is stored by its numbers."""
        panels = []
        for p in self.panels:
            rows, cols = p.shape
            entry = {"name": p.name, "rows": rows, "cols": cols, "box": [float(v) for v in p.box]}
            start = int(p.tokens[0, 0]) if p.tokens.size else 0
            stride = int(p.tokens[1, 0] - p.tokens[0, 0]) if rows > 1 else cols
            if np.array_equal(p.tokens, _regular(start, stride, rows, cols)):
                entry.update(start=start, row_stride=stride)
            else:
                entry["tokens"] = p.tokens.tolist()
            panels.append(entry)
        return {"model_type": self.model_type, "n_tokens": int(self.n_tokens),
                "image_size": [int(v) for v in self.image_size], "panels": panels,
                "non_spatial": {k: [int(i) for i in v] for k, v in self.non_spatial.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "TokenLayout":
        panels = []
        for entry in data["panels"]:
            if "tokens" in entry:
                tokens = np.asarray(entry["tokens"], dtype=np.int64).reshape(entry["rows"], entry["cols"])
            else:
                tokens = _regular(entry["start"], entry["row_stride"], entry["rows"], entry["cols"])
            panels.append(Panel(entry["name"], tokens, tuple(float(v) for v in entry["box"])))
        return cls(data["model_type"], int(data["n_tokens"]), tuple(data["image_size"]), tuple(panels),
                   {k: tuple(int(i) for i in v) for k, v in data.get("non_spatial", {}).items()})


def _overlap(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _regular(start: int, row_stride: int, rows: int, cols: int) -> np.ndarray:
    return (start + row_stride * np.arange(rows)[:, None] + np.arange(cols)[None, :]).astype(np.int64)


def _get(size, key):
    """A key of a size dict or transformers SizeDict (None when absent)."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


# ---------------------------------------------------------------------------------------
# Families: one layout function per family, named by its record in hearlib.families.registry.
# Each takes (config, processor, sample, width, height) and returns (panels, non_spatial).
# ---------------------------------------------------------------------------------------
def _clip_box(image_processor, width: int, height: int) -> Box:
    """Part of a (width × height) image that a resize + center-crop image processor keeps."""
    new_h, new_w = height, width
    size = getattr(image_processor, "size", None)
    if getattr(image_processor, "do_resize", True) and size is not None:
        if _get(size, "shortest_edge") and not _get(size, "longest_edge"):
            short_target = int(_get(size, "shortest_edge"))
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = short_target, int(short_target * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        elif _get(size, "height") and _get(size, "width"):
            new_h, new_w = int(_get(size, "height")), int(_get(size, "width"))
        else:
            raise UnsupportedModel(f"image processor size {size} is not a shortest-edge or (height, width) resize")
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        crop_h, crop_w = min(int(_get(crop, "height")), new_h), min(int(_get(crop, "width")), new_w)
        top, left = int((new_h - crop_h) / 2.0), int((new_w - crop_w) / 2.0)
    else:
        crop_h, crop_w, top, left = new_h, new_w, 0, 0
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)


def llava_layout(config, processor, sample, width, height):
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(_pair(vision.image_size), _pair(vision.patch_size)))
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    n_cls = 0 if strategy == "default" else 1
    panel = Panel("base", _regular(n_cls, cols, rows, cols), _clip_box(processor.image_processor, width, height))
    return [panel], ({"cls": (0,)} if n_cls else {})


def llava_next_layout(config, processor, sample, width, height):
    if getattr(config, "vision_feature_select_strategy", "default") != "default":
        raise UnsupportedModel("LLaVA-NeXT layout needs vision_feature_select_strategy='default'")
    return _anyres_layout(config, sample, width, height)


def llava_onevision_layout(config, processor, sample, width, height):
    """LLaVA-NeXT's anyres layout; SigLIP has no class token, so "full" keeps every patch. The
    anyres_max_9 bilinear down-sizing of the high-res grid is refused (it never happens at one tile)."""
    strategy = getattr(config, "vision_feature_select_strategy", "full")
    if strategy != "full" or "siglip" not in config.vision_config.model_type:
        raise UnsupportedModel("LLaVA-OneVision layout needs a SigLIP tower with vision_feature_select_strategy='full'")
    panels, non_spatial = _anyres_layout(config, sample, width, height)
    rows, cols = panels[1].shape
    side = panels[0].shape[0]
    max_tiles = int(str(getattr(processor, "vision_aspect_ratio", "anyres_max_9")).replace("anyres_max_", ""))
    if math.sqrt(rows * cols / (max_tiles * side * side)) > 1.1:
        raise UnsupportedModel(f"LLaVA-OneVision: a {rows} × {cols} high-res grid is down-sized (anyres_max_"
                               f"{max_tiles}); run at a resolution of fewer tiles")
    return panels, non_spatial


def _anyres_layout(config, sample, width, height):
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    vision = config.vision_config
    tile = _pair(vision.image_size)[0]
    side = tile // _pair(vision.patch_size)[0]
    orig_h, orig_w = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    pin_h, pin_w = select_best_resolution([orig_h, orig_w], config.image_grid_pinpoints)
    tiles_h, tiles_w = pin_h // tile, pin_w // tile
    cur_h, cur_w = tiles_h * side, tiles_w * side
    # unpad_image, as pack_image_features applies it to the joined tile grid
    r0, r1, c0, c1 = 0, cur_h, 0, cur_w
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(round(orig_h * (cur_w / orig_w), 7))
        pad = (cur_h - new_h) // 2
        r0, r1 = pad, cur_h - pad
    else:
        new_w = int(round(orig_w * (cur_h / orig_h), 7))
        pad = (cur_w - new_w) // 2
        c0, c1 = pad, cur_w - pad
    rows, cols = r1 - r0, c1 - c0
    n_base = side * side
    base = Panel("base", _regular(0, side, side, side), (0.0, 0.0, float(width), float(height)))
    high = _regular(n_base, cols + 1, rows, cols)
    newlines = tuple(int(v) for v in high[:, -1] + 1)
    # the kept features in pinpoint-canvas pixels -> pixels of the image (resized to fit, centred)
    fit_h, fit_w = get_patch_output_size(np.empty((orig_h, orig_w, 1), np.uint8), (pin_h, pin_w),
                                         ChannelDimension.LAST)
    paste_x, paste_y = (pin_w - fit_w) // 2, (pin_h - fit_h) // 2
    px_w, px_h = pin_w / cur_w, pin_h / cur_h
    sx, sy = width / fit_w, height / fit_h
    box = ((c0 * px_w - paste_x) * sx, (r0 * px_h - paste_y) * sy, (c1 * px_w - paste_x) * sx,
           (r1 * px_h - paste_y) * sy)
    box = (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))
    return [base, Panel("high-res", high, box)], {"newline": newlines}


def qwen_layout(config, processor, sample, width, height):
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    merge = int(config.vision_config.spatial_merge_size)
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    rows, cols = h // merge, w // merge
    return [Panel("base", _regular(0, cols, rows, cols), (0.0, 0.0, float(width), float(height)))], {}


def internvl_layout(config, processor, sample, width, height):
    vision = config.vision_config
    side_h, side_w = (s // p for s, p in zip(_pair(vision.image_size), _pair(vision.patch_size)))
    rows, cols = int(side_h * config.downsample_ratio), int(side_w * config.downsample_ratio)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return _tiles_and_thumbnail(processor.image_processor, n_tiles, rows, cols, width, height, "InternVL"), {}


def _whole_image_grid(image_processor, rows: int, cols: int, width, height, family: str) -> list[Panel]:
    """One row-major grid over the whole image; the image processor must resize without a crop."""
    if getattr(image_processor, "do_center_crop", False):
        raise UnsupportedModel(f"{family}: a center-cropping image processor is not the family's layout")
    return [Panel("base", _regular(0, cols, rows, cols), (0.0, 0.0, float(width), float(height)))]


def gemma3_layout(config, processor, sample, width, height):
    if int(sample.inputs["pixel_values"].shape[0]) != 1:
        raise UnsupportedModel("Gemma 3: pan-and-scan crops are not supported; turn do_pan_and_scan off")
    side = math.isqrt(int(config.mm_tokens_per_image))
    if side * side != int(config.mm_tokens_per_image):
        raise UnsupportedModel(f"Gemma 3: mm_tokens_per_image={config.mm_tokens_per_image} is not a square")
    return _whole_image_grid(processor.image_processor, side, side, width, height, "Gemma 3"), {}


def paligemma_layout(config, processor, sample, width, height):
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(_pair(vision.image_size), _pair(vision.patch_size)))
    return _whole_image_grid(processor.image_processor, rows, cols, width, height, "PaliGemma"), {}


def _tiles_and_thumbnail(image_processor, n_tiles: int, rows: int, cols: int, width, height,
                         family: str) -> list[Panel]:
    """GotOcr2-style tiling: one grid (the whole image) for one tile, else the tiles row-major and a
    thumbnail of the whole image last, each ``rows × cols`` image tokens."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    per_tile = rows * cols
    full = (0.0, 0.0, float(width), float(height))
    if n_tiles == 1:
        return [Panel("base", _regular(0, cols, rows, cols), full)]
    size = image_processor.size
    grid_w, grid_h = get_optimal_tiled_canvas((height, width), (int(_get(size, "height")), int(_get(size, "width"))),
                                              int(image_processor.min_patches), int(image_processor.max_patches))
    if grid_w * grid_h + 1 != n_tiles:
        raise UserError(f"{family}: {n_tiles} tiles in pixel_values, but a {grid_h}×{grid_w} canvas + thumbnail "
                        f"for a {width}×{height} image")
    panels = []
    for i in range(grid_w * grid_h):
        r, c = divmod(i, grid_w)
        box = (c * width / grid_w, r * height / grid_h, (c + 1) * width / grid_w, (r + 1) * height / grid_h)
        panels.append(Panel(f"tile {r},{c}", _regular(i * per_tile, cols, rows, cols), box))
    panels.append(Panel("thumbnail", _regular((n_tiles - 1) * per_tile, cols, rows, cols), full))
    return panels


def aya_vision_layout(config, processor, sample, width, height):
    """Aya Vision: SigLIP tiles pixel-shuffled by ``downsample_factor``; tiles row-major, the global
    tile last. <|START_OF_IMG|>, TILE_n, TILE_GLOBAL and <|END_OF_IMG|> are not image tokens."""
    vision = config.vision_config
    side = _pair(vision.image_size)[0] // _pair(vision.patch_size)[0] // int(config.downsample_factor)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return _tiles_and_thumbnail(processor.image_processor, n_tiles, side, side, width, height, "Aya Vision"), {}


def cohere2_vision_layout(config, processor, sample, width, height):
    """Command A Vision: as Aya Vision (thumbnail last when tiled); an <|IMG_LINE_BREAK|> after each
    tile is not an image token."""
    side = int(processor.image_processor.patch_size)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return _tiles_and_thumbnail(processor.image_processor, n_tiles, side, side, width, height,
                                "Command A Vision"), {}


def idefics3_layout(config, processor, sample, width, height):
    """Idefics3 / SmolVLM: ``(image_size/patch/scale_factor)²`` tokens per view (pixel shuffle). With
    image splitting the image is cut into rows × cols tiles (the ``<row_r_col_c>`` tokens tell how
    many) read row-major, then the global image; the row/col, ``<global-img>`` and
    ``<fake_token_around_image>`` tokens are not image tokens."""
    vision = config.vision_config
    side = _pair(vision.image_size)[0] // _pair(vision.patch_size)[0] // int(config.scale_factor)
    full = (0.0, 0.0, float(width), float(height))
    tags = [processor.tokenizer.convert_ids_to_tokens(int(i)) for i in sample.inputs["input_ids"][0]]
    cells = [tuple(int(v) for v in m.groups()) for t in tags if (m := re.fullmatch(r"<row_(\d+)_col_(\d+)>", t))]
    if not cells:
        return [Panel("global", _regular(0, side, side, side), full)], {}
    rows, cols = max(r for r, _ in cells), max(c for _, c in cells)
    per_tile = side * side
    panels = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        box = (c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
        panels.append(Panel(f"tile {r},{c}", _regular(i * per_tile, side, side, side), box))
    panels.append(Panel("global", _regular(rows * cols * per_tile, side, side, side), full))
    return panels, {}


def mistral3_layout(config, processor, sample, width, height):
    """Pixtral: the image resized whole to patches of ``patch_size``, merged ``spatial_merge_size``²;
    [IMG_BREAK] after each row and [IMG_END] are other token ids, not image tokens."""
    h, w = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    step = int(config.vision_config.patch_size) * int(config.spatial_merge_size)
    return _whole_image_grid(processor.image_processor, h // step, w // step, width, height, "Mistral 3"), {}


def video_llama_3_layout(config, processor, sample, width, height):
    """VideoLLaMA 3: one grid of ``image_grid_thw`` patches merged ``image_merge_sizes`` (1 for images)
    over the whole resized image."""
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    merges = sample.inputs.get("image_merge_sizes")
    merge = int(np.asarray(merges.cpu()).reshape(-1)[0]) if merges is not None else int(processor.image_processor.merge_size)
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    rows, cols = h // merge, w // merge
    return [Panel("base", _regular(0, cols, rows, cols), (0.0, 0.0, float(width), float(height)))], {}


def ovis2_layout(config, processor, sample, width, height):
    """Ovis2: ``(image_size/patch/hidden_stride)²`` <IMG_ATOM> tokens for the whole image; crops
    (``crop_to_patches``) are refused. The indicator tokens (<IMG_START>, <IMG_GRID>, <IMG_END>) carry
    fixed embeddings and are not image tokens."""
    if int(sample.inputs["pixel_values"].shape[0]) != 1:
        raise UnsupportedModel("Ovis2: crops are not supported; turn crop_to_patches off")
    vision = config.vision_config
    side = _pair(vision.image_size)[0] // _pair(vision.patch_size)[0] // int(vision.hidden_stride)
    return _whole_image_grid(processor.image_processor, side, side, width, height, "Ovis2"), {}


def deepseek_vl_layout(config, processor, sample, width, height):
    """DeepSeek-VL: one SigLIP grid (no class token) over the image padded to a square; only square
    inputs (no padding) are supported."""
    if width != height and getattr(processor.image_processor, "do_pad", False):
        raise UnsupportedModel("DeepSeek-VL pads a non-square image to a square; run at a square resolution")
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(_pair(vision.image_size), _pair(vision.patch_size)))
    return _whole_image_grid(processor.image_processor, rows, cols, width, height, "DeepSeek-VL"), {}


def no_layout(config, processor, sample, width, height):
    """A derived record (:func:`hearlib.families.registry.derived_family`) knows no geometry."""
    raise UnsupportedModel(f"{config.model_type} is not registered (a derived record): hearlib does not know "
                           "where its image tokens lie, so image maps are unavailable; register the family "
                           "(docs/ADDING_A_MODEL_FAMILY.md) to draw them")


def image_token_layout(engine, sample) -> TokenLayout:
    """The layout of ``sample``'s image tokens (order of ``sample.image_positions``).

    Computed by the family's ``layout`` function (:data:`hearlib.families.registry.FAMILIES`) from
    ``engine.model.config``, ``engine.processor`` and the processor outputs kept in
    ``sample.inputs``; raises :class:`UserError` if it does not account for exactly
    ``sample.n_image`` tokens."""
    config = engine.model.config
    layout_of_family = engine.family.layout
    width, height = _image_size(config, engine.processor, sample)
    panels, non_spatial = layout_of_family(config, engine.processor, sample, width, height)
    n_tokens = sum(int((p.tokens >= 0).sum()) for p in panels) + sum(len(v) for v in non_spatial.values())
    if n_tokens != sample.n_image:
        raise UserError(f"{config.model_type} layout gives {n_tokens} image tokens, the sample has "
                        f"{sample.n_image}; the processor or config differ from what hearlib.families.geometry expects")
    layout = TokenLayout(config.model_type, n_tokens, (int(width), int(height)), tuple(panels), non_spatial)
    layout.check()
    return layout


def _image_size(config, processor, sample) -> tuple[int, int]:
    """(width, height) of the image the processor received (``sample.image_size`` when kept)."""
    if getattr(sample, "image_size", None):
        return tuple(int(v) for v in sample.image_size)
    inputs = sample.inputs
    if "image_sizes" in inputs:                                     # LLaVA-NeXT: (height, width)
        h, w = (int(v) for v in np.asarray(inputs["image_sizes"].cpu())[0])
        return w, h
    if "image_grid_thw" in inputs:                                  # Qwen: the resized image
        _, h, w = (int(v) for v in np.asarray(inputs["image_grid_thw"].cpu())[0])
        patch = int(config.vision_config.patch_size)
        return w * patch, h * patch
    h, w = inputs["pixel_values"].shape[-2:]                        # the processed image itself
    return int(w), int(h)


# ---------------------------------------------------------------------------------------
# Maps and drawing
# ---------------------------------------------------------------------------------------
def to_maps(values, layout: TokenLayout) -> list[np.ndarray]:
    """One float [rows, cols] map per panel of ``layout`` (NaN where no token)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != layout.n_tokens:
        raise ValueError(f"{values.size} values for a layout of {layout.n_tokens} image tokens")
    maps = []
    for p in layout.panels:
        out = np.full(p.shape, np.nan)
        mask = p.tokens >= 0
        out[mask] = values[p.tokens[mask]]
        maps.append(out)
    return maps


def draw_over_image(target, image, values, layout: TokenLayout, *, panels=None, cmap="viridis",
                    alpha: float = 0.6, vmin: float | None = None, vmax: float | None = None, norm=None,
                    titles: bool = True):
    """Draw per-token ``values`` over ``image``, each panel on the part of the image it covers.

    ``target`` is a matplotlib Axes (the panels drawn over one copy of the image; default
    :meth:`TokenLayout.finest`, the non-overlapping finest panels) or a Figure (one new Axes
    per panel, side by side; default all panels, e.g. LLaVA-NeXT's base and high-res grids).
    ``panels``: names or indices to draw. All drawn panels share one colour scale (``norm``, or
    ``vmin``/``vmax``, else the range of the drawn tokens); returns the last mappable (for
    ``fig.colorbar``)."""
    import matplotlib.colors as mcolors
    from matplotlib.figure import Figure

    names = [q.name for q in layout.panels]
    if panels is None:
        panels = names if isinstance(target, Figure) else layout.finest()
    chosen = [p if isinstance(p, int) else names.index(p) for p in panels]
    maps = to_maps(values, layout)
    pixels = np.asarray(image)
    img_h, img_w = pixels.shape[:2]
    sx, sy = img_w / layout.image_size[0], img_h / layout.image_size[1]
    if norm is None:
        drawn = np.concatenate([maps[i].ravel() for i in chosen])
        drawn = drawn[np.isfinite(drawn)]
        lo = vmin if vmin is not None else (float(drawn.min()) if drawn.size else 0.0)
        hi = vmax if vmax is not None else (float(drawn.max()) if drawn.size else 1.0)
        norm = mcolors.Normalize(lo, hi)
    if isinstance(target, Figure):
        axes = list(np.atleast_1d(target.subplots(1, len(chosen), squeeze=False)[0]))
    else:
        axes = [target] * len(chosen)
    mappable, shown = None, set()
    for ax, i in zip(axes, chosen):
        if id(ax) not in shown:
            ax.imshow(pixels, extent=(0, img_w, img_h, 0))
            shown.add(id(ax))
        x0, y0, x1, y1 = layout.panels[i].box
        mappable = ax.imshow(maps[i], extent=(x0 * sx, x1 * sx, y1 * sy, y0 * sy), cmap=cmap, norm=norm,
                             alpha=alpha, interpolation="nearest")
        ax.set_xlim(0, img_w)
        ax.set_ylim(img_h, 0)
        ax.set_axis_off()
        if titles and len(chosen) > 1 and isinstance(target, Figure):
            ax.set_title(layout.panels[i].name)
    return mappable
