"""The head explorer's logic (notebooks/00_explore): panel data read from the store, the live
ablation, the head-set export, and the drawings. The notebook only wires widgets to these.

:class:`Explorer` reads the records ``hearlib run`` collected for one (model, dataset) through
:class:`hearlib.paper.study.Study`, so under ``HEARLIB_READ_ONLY`` (or a filled store) it computes
nothing; a missing record shows as "not collected" with the command that fills it. Records are
cached per sample, so changing the sample or the head only redraws. Only :meth:`Explorer.load_model`
loads a model (the organism runs on CPU), after which :meth:`Explorer.live_pi` ablates a head set
with ``engine.normalized`` and the pipeline's mean keys/values, as the validation stage does.
"""
from __future__ import annotations

import io as _io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hearlib.paper.analysis import CRITERIA, head_name, ranking
from hearlib.errors import UserError
from hearlib.records.pipeline import NotCollected
from hearlib.records.stages import Settings, StageFailed

__all__ = ["Explorer", "HeadPanel", "export_head_set", "load_head_set", "figure_png", "draw_overview",
           "draw_head", "draw_curves", "draw_static", "parse_head"]

EXPORT_VERSION = 1


@dataclass
class HeadPanel:
    """What the explorer shows for one head of one sample (None where the record is not collected)."""

    n: int
    name: str
    theta: float
    rank: int                          # 1 = largest θ
    image_attention: float             # Eq. 10 weight (sum over image tokens)
    attention: np.ndarray | None       # Eq. 10 per image token [P_img] (head_attention record)
    layout: object | None              # hearlib.families.geometry.TokenLayout of the sample
    lens: list | None                  # [(token, logit)] top tokens of the head's output
    delta: float | None                # single-head Δ = 1 − π(x_¬n)
    in_x_star: bool | None             # in this sample's x*
    x_star_share: float | None         # share of the stored samples whose x* holds the head
    missing: list                      # what could not be read, with why


class Explorer:
    """Store-backed panel data for one model's samples (see the module docstring).

    ``settings``: the study's n_masks, ratio, seed, threshold (the keys of the records to read)."""

    def __init__(self, study, *, n_samples: int | None, correct_only: bool = True, n_masks: int = 10_000,
                 ratio: float = 0.75, seed: int = 0, threshold: float = 0.8, lens_k: int = 10):
        self.study = study
        self.settings = dict(n_masks=int(n_masks), ratio=float(ratio), seed=int(seed))
        self.threshold = float(threshold)
        self.lens_k = int(lens_k)
        self._items = study.samples(n_samples, correct_only=correct_only)
        if not self._items:
            raise UserError(f"no samples of {study.model_id} on {study.dataset_id} to explore")
        self._cache: dict[tuple, object] = {}
        self._x_star_share: np.ndarray | None = None
        self.live_calls = 0

    # -- samples and records ---------------------------------------------------------------
    @property
    def items(self) -> list:
        return list(self._items)

    def item(self, sample) -> object:
        """The item with image id ``sample`` (or the item itself)."""
        if not isinstance(sample, (str, int)):
            return sample
        for it in self._items:
            if str(it.image_id) == str(sample):
                return it
        raise UserError(f"sample {sample} is not among the explorer's {len(self._items)} samples")

    def _record(self, stage: str, item, **settings):
        key = (stage, str(item.image_id))
        if key not in self._cache:
            try:
                self._cache[key] = getattr(self.study, stage)(item, **settings) if hasattr(self.study, stage) \
                    else self.study.pipeline.ensure(stage, item, Settings.make(**settings))
            except (NotCollected, StageFailed) as error:
                self._cache[key] = error
        value = self._cache[key]
        return None if isinstance(value, Exception) else value

    def _why(self, stage: str, item) -> str | None:
        value = self._cache.get((stage, str(item.image_id)))
        return f"{stage}: {value}" if isinstance(value, Exception) else None

    def screen(self, item):
        return self._record("screen", self.item(item))

    def attribution(self, item):
        return self._record("attribution", self.item(item), **self.settings)

    def validation(self, item):
        return self._record("validation", self.item(item), **self.settings, threshold=self.threshold)

    def head_attention(self, item):
        return self._record("head_attention", self.item(item))

    def lens(self, item):
        return self._record("lens", self.item(item), lens_k=max(self.lens_k, Settings().lens_k))

    # -- panels ------------------------------------------------------------------------------
    def shape(self, item) -> tuple[int, int]:
        """(L, H) of the model, from the sample's attribution record."""
        attr = self._need(self.attribution(item), "attribution", item)
        return int(attr["n_layers"]), int(attr["n_heads"])

    def _need(self, record, stage, item):
        if record is None:
            raise UserError(self._why(stage, self.item(item)) or f"no {stage} record for sample {item}")
        return record

    def sample_info(self, item) -> dict:
        """The sample's label, the model's answer and the attribution's fit."""
        item = self.item(item)
        screen, attr = self.screen(item), self.attribution(item)
        out = {"sample": str(item.image_id), "label": item.label, "path": str(item.path),
               "predicted": screen["predicted"] if screen is not None else None,
               "correct": screen["correct"] if screen is not None else None}
        if attr is not None:
            out.update(r2=float(attr["r2"]), pearson=float(attr["pearson"]), intercept=float(attr["intercept"]),
                       n_masks=int(attr["n_masks"]))
        valid = self.validation(item)
        if valid is not None:
            out["k_star"] = int(valid["k_star"])
        return out

    def theta_map(self, item) -> np.ndarray:
        """θ as an [L, H] map."""
        attr = self._need(self.attribution(item), "attribution", item)
        L, H = int(attr["n_layers"]), int(attr["n_heads"])
        return np.asarray(attr["theta"], dtype=np.float64).reshape(L, H)

    def heads_by_theta(self, item) -> list[tuple[int, str, float]]:
        """Every head as (n, name, θ_n), largest θ first (the HeAr order)."""
        theta = self.theta_map(item).ravel()
        H = self.shape(item)[1]
        return [(int(n), head_name(n, H), float(theta[n])) for n in ranking(theta)]

    def x_star_share(self) -> np.ndarray | None:
        """Share of the explorer's samples whose x* holds each head (validation records present)."""
        if self._x_star_share is None:
            stars = [v["x_star"] for v in (self.validation(it) for it in self._items) if v is not None]
            self._x_star_share = np.mean(np.stack(stars), axis=0) if stars else None
        return self._x_star_share

    def head(self, item, n: int) -> HeadPanel:
        """The head panel of head ``n`` (n = l·H + h) for ``item``."""
        item = self.item(item)
        attr = self._need(self.attribution(item), "attribution", item)
        L, H = int(attr["n_layers"]), int(attr["n_heads"])
        n = int(n)
        if not 0 <= n < L * H:
            raise UserError(f"head {n} is outside 0..{L * H - 1}")
        theta = np.asarray(attr["theta"], dtype=np.float64)
        rank = int(np.flatnonzero(ranking(theta) == n)[0]) + 1
        missing = []
        att = self.head_attention(item)
        attention = layout = None
        if att is not None:
            from hearlib.families.geometry import TokenLayout

            attention = np.asarray(att["attention"][n], dtype=np.float64)
            layout = TokenLayout.from_dict(att["layout"])
        else:
            missing.append(self._why("head_attention", item))
        lens = self.lens(item)
        tokens = None
        if lens is not None:
            tokens = [(str(t), float(v)) for t, v in zip(lens["lens_tokens"][n][:self.lens_k],
                                                        lens["lens_logits"][n][:self.lens_k])]
        else:
            missing.append(self._why("lens", item))
        valid = self.validation(item)
        delta = in_star = None
        if valid is not None:
            delta, in_star = float(valid["delta"][n]), bool(valid["x_star"][n])
        else:
            missing.append(self._why("validation", item))
        share = self.x_star_share()
        return HeadPanel(n, head_name(n, H), float(theta[n]), rank, float(attr["image_attention"].ravel()[n]),
                         attention, layout, tokens, delta, in_star, None if share is None else float(share[n]),
                         [m for m in missing if m])

    # -- head sets ----------------------------------------------------------------------------
    def top_k(self, item, k: int) -> np.ndarray:
        """bool [N]: the k heads of largest θ intact (the HeAr order of the validation curves)."""
        theta = self.theta_map(item).ravel()
        mask = np.zeros(theta.size, dtype=bool)
        mask[ranking(theta)[:max(0, min(int(k), theta.size))]] = True
        return mask

    def linear_prediction(self, item, heads) -> float:
        """θ·x + b, the attribution's prediction of π for head mask ``heads``."""
        attr = self._need(self.attribution(item), "attribution", item)
        heads = np.asarray(heads, dtype=np.float64).ravel()
        return float(heads @ np.asarray(attr["theta"], dtype=np.float64) + float(attr["intercept"]))

    def curves(self, item) -> dict | None:
        """Stored faithfulness and completeness (k = 1..N) per criterion, or None if not collected."""
        valid = self.validation(self.item(item))
        if valid is None:
            return None
        return {name: (np.asarray(valid["faithfulness"][i]), np.asarray(valid["completeness"][i]))
                for i, name in enumerate(valid["criteria"])}

    def stored_pi(self, item, k: int) -> float | None:
        """π with only the top-k heads by θ intact, from the stored HeAr faithfulness curve (k ≥ 1)."""
        curves = self.curves(item)
        if curves is None or "HeAr" not in curves or int(k) < 1:
            return None
        return float(curves["HeAr"][0][int(k) - 1])

    # -- live ablation ---------------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        return self.study.pipeline._engine is not None

    def load_model(self, device: str | None = None):
        """Load the model (and the pipeline's means when first used) for :meth:`live_pi`."""
        pipeline = self.study.pipeline
        if pipeline._engine is None:
            from hearlib.method.loading import load_engine

            pipeline._engine = load_engine(pipeline.model, device=device or pipeline.device)
        return pipeline._engine

    def live_pi(self, item, heads) -> float:
        """π for head mask ``heads`` (bool [N], True = intact), ablated now: ``engine.normalized``
        on the sample with the pipeline's mean keys/values and method."""
        if not self.model_loaded:
            raise UserError("load the model first (Explorer.load_model)")
        item = self.item(item)
        heads = np.asarray(heads, dtype=bool).reshape(1, -1)
        prompt = Settings().prompt
        pipeline = self.study.pipeline
        means = pipeline.means(prompt)
        ctx = pipeline._context(item, prompt)
        self.live_calls += 1
        return float(pipeline.engine.normalized(ctx.sample, means, heads, method=pipeline.method,
                                                batch_size=pipeline.batch_size)[0])

    # -- export ------------------------------------------------------------------------------------
    def head_set(self, item, heads, **extra) -> dict:
        """A JSON-ready description of a head set for ``item``."""
        item = self.item(item)
        heads = np.asarray(heads, dtype=bool).ravel()
        L, H = self.shape(item)
        idx = [int(n) for n in np.flatnonzero(heads)]
        return {"version": EXPORT_VERSION, "model": self.study.model, "model_id": self.study.model_id,
                "dataset": self.study.dataset_id, "sample": str(item.image_id), "label": item.label,
                "n_layers": L, "n_heads": H, "heads": idx, "names": [head_name(n, H) for n in idx],
                "linear_prediction": self.linear_prediction(item, heads), **extra}


def export_head_set(path: str | Path, head_set: dict) -> Path:
    """Write ``head_set`` as JSON, atomically (hearlib.io); returns the path."""
    from hearlib.io import save_json

    return save_json(Path(path), head_set)


def load_head_set(path: str | Path) -> dict:
    """Read a head set written by :func:`export_head_set`, checking its fields."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != EXPORT_VERSION or not isinstance(data.get("heads"), list):
        raise UserError(f"{path} is not a head set of the explorer (version {EXPORT_VERSION})")
    return data


def parse_head(text: str, n_heads: int) -> int:
    """``"L3H7"`` (or an index) -> n = l·H + h."""
    text = str(text).strip().upper()
    if text.isdigit():
        return int(text)
    if text.startswith("L") and "H" in text:
        layer, head = text[1:].split("H", 1)
        return int(layer) * int(n_heads) + int(head)
    raise UserError(f"not a head: {text!r} (write L<layer>H<head> or an index)")


# ----------------------------------------------------------------------------------- drawing

def figure_png(fig, dpi: int = 72) -> bytes:
    """The figure as PNG bytes, and closed (widgets and headless output show the bytes).

    One draw at a fixed layout (no ``bbox_inches="tight"``, which draws twice): rendering is most
    of an update's time."""
    import matplotlib.pyplot as plt

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


_IMAGES: dict[str, object] = {}


def _image(path, size: int = 320):
    """The sample's image, at most ``size`` pixels a side (drawing a full-size photo is slow); cached."""
    from PIL import Image

    key = str(path)
    if key not in _IMAGES:
        if len(_IMAGES) > 64:
            _IMAGES.pop(next(iter(_IMAGES)))
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            if max(im.size) < 256:          # small images (the organism's 64 px) shown at 256 px
                factor = 256 / max(im.size)
                im = im.resize((round(im.width * factor), round(im.height * factor)), Image.BICUBIC)
            _IMAGES[key] = im
    return _IMAGES[key]


def draw_overview(ex: Explorer, item, n: int | None = None, axes=None):
    """The sample's image with its answer, and θ as a layers × heads map (head ``n`` outlined)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    item = ex.item(item)
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), gridspec_kw={"width_ratios": [1, 1.3]})
        fig.subplots_adjust(left=0.02, right=0.97, bottom=0.14, top=0.84, wspace=0.25)
    info = ex.sample_info(item)
    ax = axes[0]
    ax.imshow(_image(item.path))
    ax.set_axis_off()
    verdict = {True: "correct", False: "wrong", None: "?"}[info["correct"]]
    ax.set_title(f"#{info['sample']} {info['label']!r}\nanswer {info['predicted']!r} ({verdict})", fontsize=9)
    theta = ex.theta_map(item)
    L, H = theta.shape
    ax = axes[1]
    lim = float(np.abs(theta).max()) or 1.0
    im = ax.imshow(theta, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(H) if H <= 32 else np.linspace(0, H - 1, 5).astype(int))
    ax.set_yticks(range(L) if L <= 32 else np.linspace(0, L - 1, 5).astype(int))
    title = f"θ (R² {info.get('r2', float('nan')):.2f}, k* = {info.get('k_star', '?')})"
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.05)
    if n is not None:
        ax.add_patch(Rectangle((n % H - 0.5, n // H - 0.5), 1, 1, fill=False, ec="k", lw=2))
    return fig


def draw_head(ex: Explorer, item, n: int, axes=None):
    """Head ``n``: its Eq. 10 attention over the image (true token geometry) and its logit lens."""
    import matplotlib.pyplot as plt
    from hearlib.families.geometry import draw_over_image

    item = ex.item(item)
    panel = ex.head(item, n)
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), gridspec_kw={"width_ratios": [1, 1.1]})
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.84, wspace=0.15)
    ax = axes[0]
    if panel.attention is not None:
        mappable = draw_over_image(ax, _image(item.path), panel.attention, panel.layout, cmap="magma", alpha=0.65,
                                   vmin=0.0)
        plt.colorbar(mappable, ax=ax, fraction=0.046)
        ax.set_title(f"{panel.name}: Eq. 10 attention per image token\n(sum {panel.image_attention:.3f})",
                     fontsize=9)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "attention per token not collected\n(hearlib run --stages explore)", ha="center",
                va="center", fontsize=8, transform=ax.transAxes)
    ax = axes[1]
    ax.set_axis_off()
    lines = [f"{panel.name}   θ = {panel.theta:+.4f}  (rank {panel.rank})"]
    lines.append(f"single-head Δ = {panel.delta:.4f}" if panel.delta is not None else "Δ: not collected")
    if panel.x_star_share is not None:
        lines.append(f"in x* of this sample: {'yes' if panel.in_x_star else 'no'};  "
                     f"of {len(ex.items)} samples: {panel.x_star_share:.0%}")
    lines.append("logit lens (top tokens):")
    if panel.lens is not None:
        lines += [f"  {tok!r:>14}  {val:+.2f}" for tok, val in panel.lens[:8]]
    else:
        lines.append("  not collected")
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8, transform=ax.transAxes)
    return fig


def draw_curves(ex: Explorer, item, k: int, live: float | None = None, ax=None):
    """Stored faithfulness/completeness per criterion with the top-k marker; π and θ·x + b at k."""
    import matplotlib.pyplot as plt

    item = ex.item(item)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 3.0))
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.9)
    curves = ex.curves(item)
    if curves is None:
        ax.text(0.5, 0.5, "validation not collected", ha="center", transform=ax.transAxes)
        return fig
    colours = dict(zip(CRITERIA, ("tab:red", "tab:gray", "tab:blue", "tab:green")))
    for name, (faith, comp) in curves.items():
        ks = np.arange(1, faith.size + 1)
        ax.plot(ks, faith, color=colours.get(name), label=f"{name} faithfulness")
        ax.plot(ks, comp, color=colours.get(name), ls="--", label=f"{name} completeness")
    ax.axvline(k, color="k", lw=0.8)
    pi = ex.stored_pi(item, k)
    lin = ex.linear_prediction(item, ex.top_k(item, k))
    text = f"top {k}: π = {pi:.3f} (stored), θ·x + b = {lin:.3f}"
    if live is not None:
        text += f", π live = {live:.3f}"
    ax.set_title(text, fontsize=9)
    ax.set_xlabel("k (heads kept intact / ablated, by criterion)")
    ax.set_ylabel("π")
    ax.legend(fontsize=7, ncol=2)
    return fig


def draw_static(ex: Explorer, item, n: int, k: int, live: float | None = None):
    """Every panel for one sample, head and k in one figure (the headless explorer)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(9, 10))
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1, 0.9], width_ratios=[1, 1.2])
    draw_overview(ex, item, n, axes=[fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])])
    draw_head(ex, item, n, axes=[fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])])
    draw_curves(ex, item, k, live, ax=fig.add_subplot(grid[2, :]))
    fig.suptitle(f"Head explorer: {ex.study.model_id}", fontsize=10)
    fig.tight_layout()
    return fig


def default_export_path(ex: Explorer, item, k: int, folder: str | Path = "build/explore") -> Path:
    """build/explore/<model>-<sample>-top<k>.json (relative paths under the repository)."""
    from hearlib import paths
    from hearlib.records.store import slug

    folder = Path(folder)
    if not folder.is_absolute():
        folder = paths.ROOT / folder
    return folder / f"{slug(ex.study.model_id)}-{slug(str(ex.item(item).image_id))}-top{int(k)}.json"


def items_label(items: Sequence) -> list[tuple[str, str]]:
    """Dropdown options: ("#id label", id)."""
    return [(f"#{it.image_id} {it.label}", str(it.image_id)) for it in items]


# ------------------------------------------------------------------------- fast widget renderers
# The widgets show PNGs made with PIL and HTML text, not matplotlib figures: a matplotlib render
# takes 0.2-0.5 s on a busy CPU, these a few milliseconds, so a head change is immediate.

def _png(image) -> bytes:
    buffer = _io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sample_png(ex: Explorer, item, size: int = 320) -> bytes:
    """The sample's image as PNG (at most ``size`` pixels a side)."""
    return _png(_image(ex.item(item).path, size))


def attention_png(ex: Explorer, item, n: int, size: int = 320, cmap: str = "magma", alpha: float = 0.65) -> bytes | None:
    """Head ``n``'s Eq. 10 attention per image token over the image, each token on the part of the
    image it covers (the layout's finest panels, as :func:`hearlib.families.geometry.draw_over_image`);
    colour from 0 to the head's largest token. None if not collected."""
    import matplotlib
    from PIL import Image

    from hearlib.families.geometry import to_maps

    panel = ex.head(item, n)
    if panel.attention is None:
        return None
    image = _image(ex.item(item).path, size)
    layout = panel.layout
    sx, sy = image.width / layout.image_size[0], image.height / layout.image_size[1]
    maps = to_maps(panel.attention, layout)
    top = max(float(np.nanmax(m)) for m in maps if np.isfinite(m).any()) or 1.0
    colours = matplotlib.colormaps[cmap]
    out = image.copy()
    names = [p.name for p in layout.panels]
    for name in layout.finest():
        i = names.index(name)
        x0, y0, x1, y1 = layout.panels[i].box
        box = (int(round(x0 * sx)), int(round(y0 * sy)), int(round(x1 * sx)), int(round(y1 * sy)))
        rgba = colours(np.nan_to_num(maps[i] / top))
        rgba[..., 3] = np.where(np.isfinite(maps[i]), alpha, 0.0)
        tile = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize(
            (max(1, box[2] - box[0]), max(1, box[3] - box[1])), Image.NEAREST)
        out.paste(Image.alpha_composite(out.crop(box).convert("RGBA"), tile).convert("RGB"), box[:2])
    return _png(out)


def sample_html(ex: Explorer, item) -> str:
    """The sample's label, the model's answer and the fit, as HTML."""
    import html

    info = ex.sample_info(item)
    verdict = {True: "correct", False: "wrong", None: "?"}[info["correct"]]
    fit = (f"R² {info['r2']:.2f}, b = {info['intercept']:+.3f}, k* = {info.get('k_star', '?')}"
           if "r2" in info else "attribution not collected")
    return (f"<b>#{html.escape(info['sample'])}</b> label <b>{html.escape(info['label'])}</b>, "
            f"answer <b>{html.escape(str(info['predicted']))}</b> ({verdict})<br>{fit}")


def head_html(ex: Explorer, item, n: int) -> str:
    """Head ``n``'s θ, rank, Eq. 10 weight, Δ, x* membership and share, logit lens, as HTML."""
    import html

    p = ex.head(item, n)
    rows = [f"<b>{p.name}</b> θ = {p.theta:+.4f} (rank {p.rank})",
            f"Eq. 10 image attention: {p.image_attention:.3f}",
            f"single-head Δ = {p.delta:.4f}" if p.delta is not None else "Δ: not collected"]
    if p.x_star_share is not None:
        rows.append(f"in x* here: {'yes' if p.in_x_star else 'no'}; in x* of {p.x_star_share:.0%} "
                    f"of {len(ex.items)} samples")
    if p.lens is not None:
        rows.append("logit lens: " + ", ".join(f"<code>{html.escape(t)}</code> {v:+.1f}" for t, v in p.lens[:8]))
    rows += [f"<span style='color:#b00'>{html.escape(m)}</span>" for m in p.missing]
    return "<br>".join(rows)


def open_explorer(model, data, *, store, profile=None, n_samples=None, correct_only=True, n_masks=10_000,
                  ratio=0.75, seed=0, threshold=0.8, n_mean_images=100, method="fast", batch_size=64,
                  device=None, main=None, n_size_samples=None) -> Explorer:
    """An :class:`Explorer` over the records of (model, data) in ``store`` (hearlib.paper.study semantics).

    A compared model (not ``main``) has records for its first ``n_size_samples`` samples only
    (Figs. 11-15, :mod:`hearlib.paper.plan`), so that is what it shows when given."""
    from hearlib.paper.study import Study

    if main is not None and n_size_samples is not None and str(model) != str(main):
        n_samples = n_size_samples

    study = Study(model, data, store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size,
                  device=device, profile=profile, progress=False)
    return Explorer(study, n_samples=n_samples, correct_only=correct_only, n_masks=n_masks, ratio=ratio,
                    seed=seed, threshold=threshold)


class ExplorerUI:
    """The explorer's widgets (ipywidgets): model, dataset and sample pickers, θ map as a grid of
    head buttons (a click picks the head; ipympl is not used, so a static image cannot take clicks)
    and a head list ordered by θ, the head panel, the top-k slider with the stored curves, the
    live ablation and the export. ``opener(model, data) -> Explorer``; ``widget`` is what to display."""

    GRID_MAX = 1024     # more heads than this: the list only

    def __init__(self, opener, models: Sequence[str], datasets: Sequence[str], export_folder="build/explore"):
        import ipywidgets as W

        self._opener, self._explorers = opener, {}
        self.export_folder = export_folder
        self._busy = False
        self.model = W.Dropdown(options=[str(m) for m in models], description="model")
        self.data = W.Dropdown(options=[str(d) for d in datasets], description="dataset")
        self.sample = W.Dropdown(description="sample")
        self.overview = W.Image(format="png")
        self.caption = W.HTML()
        self.head_list = W.Dropdown(description="head (by θ)", style={"description_width": "initial"})
        self.grid = W.GridBox(layout=W.Layout(grid_gap="1px"))
        self.head_view = W.Image(format="png")
        self.head_text = W.HTML()
        self.k = W.IntSlider(min=1, max=2, value=1, description="keep top-k", continuous_update=False)
        self.curves_view = W.Image(format="png")
        self.load_button = W.Button(description="load model", icon="download")
        self.run_button = W.Button(description="run it now", icon="play", disabled=True)
        self.live = W.HTML("π live: load the model to ablate the top-k set now")
        self.export_button = W.Button(description="export head set", icon="save")
        self.export_info = W.HTML()
        self.status = W.HTML()
        self.live_pi: float | None = None
        self.model.observe(lambda _: self._open(), "value")
        self.data.observe(lambda _: self._open(), "value")
        # programmatic updates set _busy; unobserve_all would also drop the widgets' own
        # value -> index observers (ipywidgets 8), leaving the page's dropdown blank and dead
        self.sample.observe(lambda change: None if self._busy else self.set_sample(change["new"]), "value")
        self.head_list.observe(lambda change: None if self._busy else self.set_head(change["new"]), "value")
        self.k.observe(lambda change: None if self._busy else self.set_k(change["new"]), "value")
        self.load_button.on_click(lambda _: self.load_model())
        self.run_button.on_click(lambda _: self.run_live())
        self.export_button.on_click(lambda _: self.export())
        self.widget = W.VBox([
            W.HBox([self.model, self.data, self.sample]), self.status,
            W.HBox([W.VBox([self.overview, self.caption]),
                    W.VBox([W.HTML("<b>θ map</b>: click a head (rows: layers, columns: heads; red θ > 0, "
                                   "blue θ < 0; ● the chosen head)"), self.grid, self.head_list])]),
            W.HBox([self.head_view, self.head_text]),
            W.HBox([self.k, self.load_button, self.run_button, self.export_button]),
            self.live, self.curves_view, self.export_info])
        self._open()

    # -- state -------------------------------------------------------------------------------
    @property
    def ex(self) -> Explorer:
        return self._explorers[(self.model.value, self.data.value)]

    def _open(self):
        key = (self.model.value, self.data.value)
        try:
            if key not in self._explorers:
                self._explorers[key] = self._opener(*key)
        except UserError as error:
            self.status.value = f"<span style='color:#b00'>{error}</span>"
            return
        self.status.value = ""
        ex = self.ex
        self._busy = True
        self.sample.options = items_label(ex.items)
        self.sample.value = str(ex.items[0].image_id)
        self._busy = False
        self.set_sample(self.sample.value)

    def set_sample(self, sample):
        """Show ``sample``: image and θ map, heads reordered by θ, the top head, k = k*."""
        ex = self.ex
        self.current = ex.item(sample)
        self.live_pi = None
        heads = ex.heads_by_theta(self.current)
        L, H = ex.shape(self.current)
        self._busy = True
        self.head_list.options = [(f"{name}  θ={theta:+.4f}", n) for n, name, theta in heads]
        self.head_list.value = heads[0][0]
        self._busy = False
        self._draw_grid(L, H)
        info = ex.sample_info(self.current)
        self._busy = True
        self.k.max = L * H
        self.k.value = max(1, min(int(info.get("k_star", 1)), L * H))
        self._busy = False
        self.overview.value = sample_png(ex, self.current)
        self.caption.value = sample_html(ex, self.current)
        self.set_head(heads[0][0])
        self.set_k(self.k.value)

    def _draw_grid(self, L, H):
        import ipywidgets as W
        import matplotlib
        import matplotlib.colors as mcolors

        if L * H > self.GRID_MAX:
            self.grid.children = ()
            return
        theta = self.ex.theta_map(self.current)
        lim = float(np.abs(theta).max()) or 1.0
        cmap = matplotlib.colormaps["RdBu_r"]
        if len(self.grid.children) != L * H:
            buttons = []
            for n in range(L * H):
                b = W.Button(layout=W.Layout(width="22px", height="18px", padding="0"), tooltip=head_name(n, H))
                b.on_click(lambda _, n=n: self.set_head(n))
                buttons.append(b)
            self.grid.children = tuple(buttons)
            self._marked = None
            self.grid.layout.grid_template_columns = f"repeat({H}, 22px)"
        for n, b in enumerate(self.grid.children):
            value = theta.ravel()[n]
            b.style.button_color = mcolors.to_hex(cmap(0.5 + 0.5 * value / lim))
            b.tooltip = f"{head_name(n, H)} θ={value:+.4f}"

    def set_head(self, n):
        """Show head ``n``: outline it on the θ map, its attention, lens, Δ and x* share."""
        ex = self.ex
        self.head = int(n)
        if self.head_list.value != self.head:
            self._busy = True
            self.head_list.value = self.head
            self._busy = False
        buttons = self.grid.children
        for m in {getattr(self, "_marked", None), self.head} - {None}:
            if m < len(buttons):
                buttons[m].description = "●" if m == self.head else ""
        self._marked = self.head
        png = attention_png(ex, self.current, self.head)
        self.head_view.value = png if png is not None else b""
        self.head_text.value = head_html(ex, self.current, self.head)

    def set_k(self, k):
        """The top-k set: stored π, θ·x + b and the curves; a live π is dropped (it was for another k)."""
        self.live_pi = None
        self.curves_view.value = figure_png(draw_curves(self.ex, self.current, int(k)))
        self.run_button.disabled = not self.ex.model_loaded
        if self.ex.model_loaded:
            self.live.value = "π live: press 'run it now'"

    # -- actions -----------------------------------------------------------------------------
    def load_model(self):
        self.live.value = "loading the model ..."
        try:
            self.ex.load_model()
        except Exception as error:     # noqa: BLE001 - shown to the user
            self.live.value = f"<span style='color:#b00'>cannot load the model: {error}</span>"
            return
        self.run_button.disabled = False
        self.live.value = "model loaded: press 'run it now'"

    def run_live(self) -> float:
        """Ablate every head outside the top-k set now and show π next to θ·x + b."""
        ex, k = self.ex, int(self.k.value)
        heads = ex.top_k(self.current, k)
        self.live_pi = ex.live_pi(self.current, heads)
        lin, stored = ex.linear_prediction(self.current, heads), ex.stored_pi(self.current, k)
        self.live.value = (f"top {k}: <b>π live = {self.live_pi:.4f}</b>, θ·x + b = {lin:.4f}"
                           + (f", stored π = {stored:.4f}" if stored is not None else ""))
        self.curves_view.value = figure_png(draw_curves(ex, self.current, k, self.live_pi))
        return self.live_pi

    def export(self) -> Path:
        ex, k = self.ex, int(self.k.value)
        heads = ex.top_k(self.current, k)
        data = ex.head_set(self.current, heads, selection=f"top {k} by θ (HeAr)", k=k,
                           pi_stored=ex.stored_pi(self.current, k), pi_live=self.live_pi)
        path = export_head_set(default_export_path(ex, self.current, k, self.export_folder), data)
        self.export_info.value = f"exported {len(data['heads'])} heads to <code>{path}</code>"
        return path
