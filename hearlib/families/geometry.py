"""Where each image token of a sample lies in the input image.

Per-image-token values (θ^img, Eq. 13's ``w``) come in the order of
``sample.image_positions``. :func:`image_token_layout` tells, for one prepared sample,
which of those tokens cover which part of the image, through the ``layout`` function of the
family's record (each lineage file, e.g. :mod:`hearlib.families.llava`, holds its family's
function and says what it assumes). A layout function takes ``(config, processor, sample, width,
height)`` and returns ``(panels, non_spatial)``: grids of token indices (:class:`Panel`) with the
part of the image each covers, and the tokens that cover no part (LLaVA-NeXT's row newlines, a
class token) by kind. The grids most families need are built here: :func:`regular_grid`,
:func:`whole_image_grid` (one grid over the whole image) and :func:`tiles_and_thumbnail`
(GotOcr2-style tiles row-major, a thumbnail of the whole image last).

Boxes are ``(x0, y0, x1, y1)`` in pixels of the image the processor received
(``layout.image_size``, i.e. after the engine's own resize); :func:`draw_over_image` rescales
them to the image it draws, which is right because the engine resizes the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hearlib.errors import UnsupportedModel, UserError

__all__ = ["Panel", "TokenLayout", "image_token_layout", "to_maps", "draw_over_image", "regular_grid",
           "whole_image_grid", "tiles_and_thumbnail", "single_grid", "size_value", "pair", "no_layout"]

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
            if np.array_equal(p.tokens, regular_grid(start, stride, rows, cols)):
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
                tokens = regular_grid(entry["start"], entry["row_stride"], entry["rows"], entry["cols"])
            panels.append(Panel(entry["name"], tokens, tuple(float(v) for v in entry["box"])))
        return cls(data["model_type"], int(data["n_tokens"]), tuple(data["image_size"]), tuple(panels),
                   {k: tuple(int(i) for i in v) for k, v in data.get("non_spatial", {}).items()})


def _overlap(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def regular_grid(start: int, row_stride: int, rows: int, cols: int) -> np.ndarray:
    """Token indices ``start + r·row_stride + c`` of a ``rows × cols`` grid."""
    return (start + row_stride * np.arange(rows)[:, None] + np.arange(cols)[None, :]).astype(np.int64)


def size_value(size, key):
    """A key of a size dict or transformers SizeDict (None when absent)."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def pair(value) -> tuple[int, int]:
    """(h, w) of a config size given as one int or a pair."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


# ---------------------------------------------------------------------------------------
# Grids the lineage files' layout functions build on
# ---------------------------------------------------------------------------------------
def single_grid(rows: int, cols: int, width, height) -> list[Panel]:
    """One row-major ``rows × cols`` grid over the whole image."""
    return [Panel("base", regular_grid(0, cols, rows, cols), (0.0, 0.0, float(width), float(height)))]


def whole_image_grid(image_processor, rows: int, cols: int, width, height, family: str) -> list[Panel]:
    """One row-major grid over the whole image; the image processor must resize without a crop."""
    if getattr(image_processor, "do_center_crop", False):
        raise UnsupportedModel(f"{family}: a center-cropping image processor is not the family's layout")
    return single_grid(rows, cols, width, height)


def tiles_and_thumbnail(image_processor, n_tiles: int, rows: int, cols: int, width, height,
                        family: str) -> list[Panel]:
    """GotOcr2-style tiling: one grid (the whole image) for one tile, else the tiles row-major and a
    thumbnail of the whole image last, each ``rows × cols`` image tokens."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    per_tile = rows * cols
    full = (0.0, 0.0, float(width), float(height))
    if n_tiles == 1:
        return [Panel("base", regular_grid(0, cols, rows, cols), full)]
    size = image_processor.size
    tile = (int(size_value(size, "height")), int(size_value(size, "width")))
    grid_w, grid_h = get_optimal_tiled_canvas((height, width), tile, int(image_processor.min_patches),
                                              int(image_processor.max_patches))
    if grid_w * grid_h + 1 != n_tiles:
        raise UserError(f"{family}: {n_tiles} tiles in pixel_values, but a {grid_h}×{grid_w} canvas + thumbnail "
                        f"for a {width}×{height} image")
    panels = []
    for i in range(grid_w * grid_h):
        r, c = divmod(i, grid_w)
        box = (c * width / grid_w, r * height / grid_h, (c + 1) * width / grid_w, (r + 1) * height / grid_h)
        panels.append(Panel(f"tile {r},{c}", regular_grid(i * per_tile, cols, rows, cols), box))
    panels.append(Panel("thumbnail", regular_grid((n_tiles - 1) * per_tile, cols, rows, cols), full))
    return panels


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
