"""The explorer's drawings: matplotlib figures for the static view, and PIL/HTML renderers fast
enough for the widgets."""
from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Sequence

import numpy as np

from hearlib.method.effects import CRITERIA
from hearlib.paper.explore.data import Explorer

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


def stability_text(document: dict) -> str:
    """One line on how stable a model's head set is (``hearlib heads``' stability numbers)."""
    stable = document["stability"]
    halves = stable.get("halves")
    widths = [r["theta_ci_high"] - r["theta_ci_low"] for r in document["heads"]]
    parts = [f"{document['n_samples']['attribution']} samples",
             f"median 95% interval of mean θ ±{np.median(widths) / 2:.3f}"]
    if halves:
        parts.append(f"x* Jaccard between halves {halves['mean']:.2f} ({halves['min']:.2f}–{halves['max']:.2f})")
    return "; ".join(parts)


def draw_models(a: dict, b: dict | None = None):
    """The model's mean θ map (x* majority outlined), and, with ``b``, the second model's beside it:
    the diff of ``hearlib heads diff`` where the two have one geometry, the two maps otherwise."""
    from hearlib.paper.plotting import diff_figure, head_map, new_figure
    from hearlib.records.heads import diff_heads

    if b is not None and (a["n_layers"], a["n_heads"]) == (b["n_layers"], b["n_heads"]):
        return diff_figure(a, b, diff_heads(a, b))
    docs = [a] if b is None else [a, b]
    figure = new_figure(figsize=(4.2 * len(docs), 3.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(docs)))
    for ax, doc in zip(axes, docs):
        theta = np.array([r["theta_mean"] for r in doc["heads"]], dtype=np.float64)
        vmax = float(np.abs(theta).max()) or 1.0
        share = np.array([r["x_star_share"] or 0.0 for r in doc["heads"]])
        majority = np.flatnonzero(share >= 0.5)
        head_map(ax, theta, f"{doc.get('model_id')}\nmean θ over {doc['n_samples']['attribution']} samples; "
                 f"{majority.size} head(s) in x* of ≥ half", shape=(doc["n_layers"], doc["n_heads"]),
                 cmap="RdBu_r", vmin=-vmax, vmax=vmax, label="θ", fontsize=8)
        if majority.size:
            ax.scatter(majority % doc["n_heads"], majority // doc["n_heads"], s=18, facecolors="none",
                       edgecolors="black", linewidths=1.2, label="in x* of ≥ half")
            ax.legend(fontsize=6, loc="upper right")
    return figure
