"""The notebooks' figures, drawn by the library (matplotlib; works under the Agg backend).

Two kinds of function, neither touching pyplot's global state:

* ``draw_*``-style helpers take an ``ax`` (or a row of axes) and draw on it; they return the
  artist a caller may want (the image of a map, the scatter of a point cloud).
* ``*_figure`` helpers build a new :class:`matplotlib.figure.Figure` (not registered with
  pyplot, so nothing stays open) and return it; :meth:`hearlib.paper.report.Report.figure` saves it.

Every map carries a colour bar; mathematical symbols are typeset with mathtext
(``$\\theta^{img}$``), and models are named as the user gave them (:func:`model_label`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hearlib.method.attribution import pearson
from hearlib.paper.report import head_grid

__all__ = [
    "diff_figure",
    "readsite_panels",
    "CRITERION_COLORS",
    "THETA",
    "THETA_N",
    "THETA_IMG",
    "DELTA_N",
    "DELTA_I",
    "PI",
    "PI_HAT",
    "W_EQ13",
    "ATTENTION_EQ10",
    "DEPTH",
    "plain",
    "model_label",
    "criterion_color",
    "group_colors",
    "new_figure",
    "head_map",
    "head_map_panels",
    "min_heads_bars",
    "theta_attention_scatter",
    "embedding_scatter",
    "token_bars",
    "heldout_scatter",
    "grouped_bars",
    "image_token_maps",
    "image_panels",
    "head_vector_figure",
    "table_figure",
    "message_figure",
]

# colours of the four ranking criteria (Fig. 3A, 5, 9A, 11)
CRITERION_COLORS: dict[str, str] = {"HeAr": "tab:red", "Random": "tab:gray", "Attention": "tab:blue",
                                    "Causal": "tab:green"}

# symbols as mathtext, for titles and axis labels
THETA = r"$\theta$"
THETA_N = r"$\theta_n$"
THETA_IMG = r"$\theta^{\mathrm{img}}$"
DELTA_N = r"$\Delta_n = 1 - \pi(x_{\neg n})$"
DELTA_I = r"$\Delta_i = 1 - \pi(x^*, u_{\neg i})\,/\,\pi(x^*)$"
PI = r"$\pi(x)$"
PI_HAT = r"$\hat{\pi}(x) = \theta \cdot x + b$"
W_EQ13 = r"weighted image attention $w$ (Eq. 13)"
ATTENTION_EQ10 = "image attention weight (Eq. 10)"
DEPTH = r"relative depth $l\,/\,(L-1)$"


def plain(text) -> str:
    """``text`` as a literal matplotlib label: a ``$`` from data (a token, a file name) does not start mathtext."""
    return str(text).replace("$", r"\$")


def model_label(model) -> str:
    """A model's name as the user gave it, for titles and tables.

    A local folder (an organism, a downloaded checkpoint) is named by its folder
    (``data/models/hear-organism-s`` → ``hear-organism-s``); a hub id (``llava-hf/llava-1.5-7b-hf``)
    or a registry name (``llava-1.5-7b``) is shown as is. ``model`` may be a string, a path, or
    anything with a ``.model`` attribute (a :class:`hearlib.paper.study.Study`). Never the internal id
    with its fingerprint (``Study.model_id``).
    """
    model = getattr(model, "model", model)
    text = str(model)
    stripped = text.rstrip("/") or text
    path = Path(stripped).expanduser()
    # the rule of hearlib.method.loading.load_engine: a hub id is "owner/name" that is not a local path
    # (here also not one under the repository root, where hearlib.paper.study looks for relative paths)
    from hearlib import paths

    looks_local = (path.exists() or (not path.is_absolute() and (paths.ROOT / path).exists())
                   or stripped.startswith((".", "/", "~")) or stripped.count("/") != 1)
    return path.name if looks_local and path.name else stripped


def criterion_color(name: str) -> str:
    """The colour of a ranking criterion (HeAr red, Random grey, Attention blue, Causal green)."""
    return CRITERION_COLORS.get(str(name), "tab:purple")


def group_colors(groups: Sequence) -> dict:
    """One colour per distinct group (sorted), from tab10 (≤ 10 groups) or tab20."""
    import matplotlib

    names = sorted(set(np.asarray(groups).tolist()))
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    return {g: cmap(i % cmap.N) for i, g in enumerate(names)}


def new_figure(figsize=(6.4, 4.8), **kwargs) -> Figure:
    """A Figure outside pyplot (no global state; saved by ``Report.figure``, garbage-collected after)."""
    return Figure(figsize=figsize, **kwargs)


def _image(ax, values, cmap, vmin, vmax, symmetric):
    values = np.asarray(values, dtype=np.float64)
    if symmetric:
        v = float(np.nanmax(np.abs(values))) if values.size else 0.0
        v = v if np.isfinite(v) and v > 0 else 1.0
        vmin, vmax = -v, v
    return ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")


def head_map(ax, values, title: str | None = None, *, shape: tuple[int, int] | None = None,
             cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
             symmetric: bool = False, colorbar: bool = True, label: str | None = None, fontsize: int = 9,
             layers: Sequence[int] | None = None):
    """One value per head as an L × H map (layer rows, head columns) on ``ax``, with a colour bar.

    ``values`` [L, H], or [N] with ``shape=(L, H)``. ``symmetric`` centres a diverging map on 0
    (±max |value|). ``colorbar=False`` leaves the bar to the caller (one shared bar for a row of
    maps, see :func:`head_map_panels`). ``layers``: the decoder layer of each row where HeAr covers
    some layers only (:meth:`hearlib.paper.study.Study.layer_rows`). Returns the image.
    """
    values = np.asarray(values, dtype=np.float64)
    if shape is not None:
        values = values.reshape(shape)
    im = _image(ax, values, cmap, vmin, vmax, symmetric)
    head_grid(ax, layers)
    if title:
        ax.set_title(title, fontsize=fontsize)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label)
    return im


def head_map_panels(maps: Sequence, titles: Sequence[str], *, cols: int = 3, cmap: str = "viridis",
                    vmin: float | None = None, vmax: float | None = None, label: str | None = None,
                    suptitle: str | None = None, panel_size=(3.6, 3.0), fontsize: int = 8,
                    layers: Sequence[Sequence[int] | None] | None = None) -> Figure:
    """A grid of head maps (one per entry of ``maps``, each [L, H]) sharing one colour scale and bar.

    ``vmin``/``vmax`` default to the range over all maps. Unused cells are switched off. ``layers``: per
    map, the decoder layer of each row where HeAr covers some layers only (see :func:`head_map`).
    """
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    if not maps:
        return message_figure("nothing to show")
    cols = max(1, min(cols, len(maps)))
    rows = int(np.ceil(len(maps) / cols))
    lo = float(min(np.nanmin(m) for m in maps)) if vmin is None else vmin
    hi = float(max(np.nanmax(m) for m in maps)) if vmax is None else vmax
    fig = new_figure(figsize=(panel_size[0] * cols + 0.8, panel_size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    rows = [None] * len(maps) if layers is None else list(layers)
    for ax, m, title, map_layers in zip(axes.flat, maps, titles, rows):
        im = head_map(ax, m, title, cmap=cmap, vmin=lo, vmax=hi, colorbar=False, fontsize=fontsize,
                      layers=map_layers)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def min_heads_bars(axes, k_faithfulness: np.ndarray, k_completeness: np.ndarray, criteria: Sequence[str],
                   title: str, n_heads: int, faithfulness: float = 0.8, completeness: float = 0.2) -> None:
    """Fig. 3A/11: mean ± std minimum heads per criterion, on two axes (faithfulness, completeness).

    ``k_*`` [S, C] from :func:`hearlib.paper.analysis.min_heads_per_criterion`. A dotted line marks N
    (a mean above it includes samples that never reached the threshold, counted N + 1).
    """
    names = (f"faithfulness > {faithfulness:g}", f"completeness < {completeness:g}")
    for ax, k, name in zip(axes, (k_faithfulness, k_completeness), names):
        k = np.atleast_2d(np.asarray(k, dtype=np.float64))
        ax.bar(list(criteria), k.mean(axis=0), yerr=k.std(axis=0), capsize=3,
               color=[criterion_color(c) for c in criteria])
        ax.axhline(n_heads, color="k", lw=0.6, ls=":", label=f"N = {n_heads}")
        ax.set_title(f"{title}: {name}", fontsize=9)
        ax.set_ylabel("minimum number of heads")


def theta_attention_scatter(ax, theta: np.ndarray, attention: np.ndarray, n_layers: int, n_heads: int,
                            title: str, *, colorbar: bool = False, fontsize: int = 9):
    """Fig. 3D/14, 9C: θ_n against the image attention weight (Eq. 10) of every head of every sample,
    coloured by relative depth. ``theta`` and ``attention`` [S, N] (or [S, L, H]).

    Returns ``(scatter, pearson_rho)``; ``colorbar=True`` adds the depth colour bar to this axis.
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(-1, n_layers * n_heads)
    attention = np.asarray(attention, dtype=np.float64).reshape(theta.shape)
    depth = np.repeat(np.arange(n_layers, dtype=np.float64) / max(1, n_layers - 1), n_heads)
    depth = np.broadcast_to(depth, theta.shape)
    sc = ax.scatter(attention.ravel(), theta.ravel(), c=depth.ravel(), cmap="viridis", vmin=0, vmax=1,
                    s=5, alpha=0.6)
    rho = pearson(attention.ravel(), theta.ravel())
    ax.set_xlabel(ATTENTION_EQ10)
    ax.set_ylabel(THETA_N)
    ax.set_title(rf"{title}: $\rho$ = {rho:.2f}", fontsize=fontsize)
    if colorbar:
        ax.figure.colorbar(sc, ax=ax, label=DEPTH)
    return sc, rho


def embedding_scatter(ax, xy: np.ndarray, groups: Sequence, title: str, *, fontsize: int = 9) -> None:
    """Fig. 3E/13, 9E: a 2-D embedding, one colour (and legend entry) per group."""
    xy = np.asarray(xy, dtype=np.float64)
    groups = np.asarray(groups)
    colors = group_colors(groups)
    for g, color in colors.items():
        sel = groups == g
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, color=color, label=plain(g))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)
    ax.legend(fontsize=6, markerscale=0.8, loc="best", ncol=2 if len(colors) > 8 else 1)


def token_bars(ax, delta: np.ndarray, tokens: Sequence[str], title: str, threshold: float = 0.05) -> None:
    """Fig. 4A/15: Δ_i per text token, mean ± std over samples (``delta`` [S, P]); tokens above
    ``threshold`` red, the rest grey; the dashed line marks the threshold. Tick labels are the
    tokens as text (:func:`hearlib.paper.analysis.token_text`: no ``▁``/``Ġ`` markers; ``␣`` a bare space,
    ``\\n`` a line break)."""
    from hearlib.paper.analysis import token_text

    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    mean, std = delta.mean(axis=0), delta.std(axis=0)
    ax.bar(range(len(tokens)), mean, yerr=std, capsize=2,
           color=["tab:red" if m > threshold else "tab:gray" for m in mean])
    ax.axhline(threshold, color="k", lw=0.7, ls="--", label=f"threshold {threshold:g}")
    ax.set_xticks(range(len(tokens)))
    names = [token_text(t) for t in tokens]
    ax.set_xticklabels([plain("␣" if t == "" else "\\n" if t == "\n" else t) for t in names], rotation=70, fontsize=7)
    ax.set_ylabel(DELTA_I)
    ax.set_title(title, fontsize=9)


def heldout_scatter(ax, pi: np.ndarray, pred: np.ndarray, title: str) -> None:
    """Fig. 2 (left): π against the prediction π̂ on held-out masks, with the identity line."""
    pi = np.asarray(pi, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ax.scatter(pi, pred, s=6, alpha=0.5)
    lim = [float(min(pi.min(), pred.min())), float(max(pi.max(), pred.max()))]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel(PI + " (ground truth)")
    ax.set_ylabel(PI_HAT)
    ax.set_title(title)


def grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float]],
                 colors: Mapping[str, str] | None = None, *, ylabel: str | None = None,
                 title: str | None = None) -> None:
    """Bars grouped along x by ``groups``, one bar per series within each group (Fig. 9A).

    ``series`` maps a name (a criterion) to one value per group; colours default to
    :func:`criterion_color`.
    """
    names = list(series)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        color = (colors or {}).get(name, criterion_color(name))
        ax.bar(x + i * width, np.asarray(series[name], dtype=np.float64), width, color=color, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2)
    ax.set_xticklabels([plain(g) for g in groups])
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)


def _load_image(image):
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    return np.asarray(image)


def image_token_maps(images: Sequence, labels: Sequence[str], entries: Sequence[Mapping], n_rows: int,
                     title: str) -> Figure:
    """Fig. 4B/16/17: per sample the image, θ^img on the image grid, and Eq. 13's w, each map with a colour bar.

    ``images``: paths, PIL images or arrays; ``entries``: the image stage's results, each with
    ``"theta_img"``, ``"w"``, ``"grid"`` and ``"r2"``. At most ``n_rows`` samples.
    """
    from hearlib.method.effects import to_grid

    n_rows = min(int(n_rows), len(images), len(entries))
    if n_rows <= 0:
        return message_figure(f"{title}: no samples to show")
    fig = new_figure(figsize=(9.0, 2.6 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, 3, squeeze=False)
    for row, image, label, e in zip(axes, images, labels, entries):
        picture = _load_image(image)
        row[0].imshow(picture)
        row[0].set_title(plain(label), fontsize=8)
        theta, w = np.asarray(e["theta_img"], dtype=float), np.asarray(e["w"], dtype=float)
        v = float(np.abs(theta).max()) or 1.0
        im = _token_map(row[1], picture, theta, e, cmap="RdBu_r", vmin=-v, vmax=v)
        row[1].set_title(rf"{THETA_IMG} ($R^2$ = {float(e['r2']):.2f})", fontsize=8)
        fig.colorbar(im, ax=row[1], shrink=0.9, label=THETA_IMG)
        im = _token_map(row[2], picture, w, e, cmap="magma")
        rho = pearson(theta.ravel(), w.ravel())
        row[2].set_title(rf"$w$ (Eq. 13), $\rho$ = {rho:.2f}", fontsize=8)
        fig.colorbar(im, ax=row[2], shrink=0.9, label=r"$w$")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return fig


def _token_map(ax, picture, values, entry, **style):
    """Per-image-token values drawn over the image in the model's token geometry
    (:mod:`hearlib.families.geometry`: grids, tiles, LLaVA-NeXT's base and high-res grids); a record without
    a layout is drawn as a square grid, or a strip."""
    from hearlib.method.effects import to_grid
    from hearlib.families.geometry import TokenLayout, draw_over_image

    if "layout" in entry:
        return draw_over_image(ax, picture, values, TokenLayout.from_dict(entry["layout"]), alpha=0.75,
                               titles=False, **style)
    grid = tuple(int(g) for g in entry["grid"]) if "grid" in entry else None
    return ax.imshow(to_grid(values, grid), **style)


def image_panels(images: Sequence, titles: Sequence[str], panel_size=(2.2, 2.4)) -> Figure:
    """A row of images with titles and no axes (Fig. 9D)."""
    if not len(images):
        return message_figure("no images to show")
    fig = new_figure(figsize=(panel_size[0] * len(images), panel_size[1]), layout="constrained")
    axes = fig.subplots(1, len(images), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles):
        ax.imshow(_load_image(image))
        ax.set_title(plain(title), fontsize=8)
        ax.axis("off")
    return fig


def head_vector_figure(vectors: np.ndarray, row_order: Sequence[int], col_order: Sequence[int],
                       head_labels: Sequence[str], sample_labels: Sequence[str]) -> Figure:
    """Fig. 10: the clustered matrix of head vectors (heads × samples), diverging around 0, with a colour bar.

    ``vectors`` [K, S] from :func:`hearlib.method.effects.head_vectors`; ``row_order``/``col_order``
    from :func:`hearlib.paper.analysis.cluster_head_vectors`; labels in the unclustered order.
    """
    row_order = np.asarray(row_order, dtype=np.int64)
    col_order = np.asarray(col_order, dtype=np.int64)
    mat = np.asarray(vectors, dtype=np.float64)[row_order][:, col_order]
    fig = new_figure(figsize=(min(16.0, 2.5 + 0.06 * mat.shape[1]), 1.5 + 0.22 * mat.shape[0]),
                     layout="constrained")
    ax = fig.subplots()
    im = _image(ax, mat, "RdBu_r", None, None, symmetric=True)
    ax.set_yticks(range(mat.shape[0]))
    ax.set_yticklabels([plain(head_labels[i]) for i in row_order], fontsize=6)
    ax.set_xticks(range(mat.shape[1]))
    ax.set_xticklabels([plain(sample_labels[i]) for i in col_order], rotation=90, fontsize=5)
    ax.set_xlabel("samples (clustered)")
    ax.set_ylabel("heads (clustered)")
    fig.colorbar(im, ax=ax, label=THETA_N)
    return fig


def table_figure(cells: Sequence[Sequence], col_labels: Sequence[str], fontsize: int = 7) -> Figure:
    """A table drawn as a figure (Fig. 8's logit lens), columns sized to their contents."""
    fig = new_figure(figsize=(11, 0.35 * len(cells) + 0.8))
    ax = fig.subplots()
    ax.axis("off")
    if not len(cells):
        ax.text(0.5, 0.5, "no rows", ha="center", va="center")
        return fig
    tab = ax.table(cellText=[[str(c) for c in row] for row in cells], colLabels=list(col_labels),
                   loc="center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    tab.auto_set_column_width(list(range(len(col_labels))))
    return fig


def message_figure(text: str, figsize=(4, 1)) -> Figure:
    """A small figure that only says ``text`` (an item with nothing to draw still gets its file).

    It is marked as a placeholder: :meth:`hearlib.paper.report.Report.figure` refuses it unless the
    notebook says why there is nothing to draw (``why=``), so no render passes on an empty item."""
    fig = new_figure(figsize=figsize)
    fig.hearlib_placeholder = text
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def diff_figure(a: dict, b: dict, result: dict):
    """``hearlib heads diff`` (:func:`hearlib.records.heads.diff_heads`) as one figure: θ maps of a and b (layers × heads) and θ_b against θ_a, gained heads marked
    green, lost red, kept black."""
    shape = (a["n_layers"], a["n_heads"])
    theta_a = np.array([r["theta_mean"] for r in a["heads"]], dtype=np.float64)
    theta_b = np.array([r["theta_mean"] for r in b["heads"]], dtype=np.float64)
    figure = new_figure(figsize=(12, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    vmax = float(max(np.abs(theta_a).max(), np.abs(theta_b).max(), 1e-12))
    for ax, theta, doc, name in ((axes[0], theta_a, a, "a"), (axes[1], theta_b, b, "b")):
        head_map(ax, theta, f"{name}: {doc.get('model_id')} ({doc.get('dataset')})\nmean θ", shape=shape,
                 cmap="RdBu_r", vmin=-vmax, vmax=vmax, label="θ")
        for kind, colour in (("gained", "tab:green"), ("lost", "tab:red"), ("kept", "black")):
            heads = np.array(result[kind]).reshape(-1, 2)
            if len(heads):
                ax.scatter(heads[:, 1], heads[:, 0], s=18, facecolors="none", edgecolors=colour, linewidths=1.2)
    ax = axes[2]
    ax.scatter(theta_a, theta_b, s=8, color="0.6")
    n_heads = a["n_heads"]
    for kind, colour in (("gained", "tab:green"), ("lost", "tab:red"), ("kept", "black")):
        index = [layer * n_heads + head for layer, head in result[kind]]
        if index:
            ax.scatter(theta_a[index], theta_b[index], s=16, color=colour, label=f"{kind} ({len(index)})")
    ax.axline((0, 0), slope=1, color="0.8", linewidth=0.8, zorder=0)
    spearman = result["spearman_theta"]
    ax.set_title(f"mean θ, b against a: Spearman {spearman:.2f}, Jaccard {result['jaccard']:.2f}"
                 if spearman is not None else f"mean θ, b against a: Jaccard {result['jaccard']:.2f}", fontsize=9)
    ax.set_xlabel("θ (a)")
    ax.set_ylabel("θ (b)")
    if any(result[kind] for kind in ("gained", "lost", "kept")):
        ax.legend(fontsize=7)
    return figure


# --------------------------------------------------------------------------- where the read happens (notebook 11)
def _knockout_panel(ax, name: str, res: Mapping) -> None:
    layers = np.arange(res["L"])
    ax.bar(layers, res["xstar"], color="0.85", label="HeAr: share with x* here")
    for question, curve in res["drop"].items():
        line, = ax.plot(layers, curve, "o-", ms=3, label=f"knockout, {question}")
        if question in res["drop2"]:
            ax.plot(layers[:-1], res["drop2"][question], "--", color=line.get_color(), lw=1)
    ax.set_xlabel("layer"), ax.set_ylabel("1 − π (drop, median)")
    ax.set_title(f"{name}: window knockout", fontsize=9), ax.legend(fontsize=6)


def _dependence_panel(ax, name: str, res: Mapping) -> None:
    if "dependence" in res:
        for question, curve in res["dependence"]["per_question"].items():
            ax.plot(np.arange(res["L"]), curve, "o-", ms=3, label=f"object vs {question}")
        ax.set_ylim(-0.2, 1.05), ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "one question type only:\nno comparison", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("layer"), ax.set_ylabel("correlation of attention maps")
    ax.set_title(f"{name}: question dependence of the final position's read", fontsize=9)


def _probes_panel(ax, name: str, res: Mapping) -> None:
    for label, probe in res["probes"].items():
        ax.plot(np.arange(res["L"] + 1), probe["accuracy"], "o-", ms=3, label=f"{label} (chance {probe['chance']:.2f})")
    ax.set_xlabel("after layer (0 = embeddings)"), ax.set_ylabel("probe accuracy"), ax.set_ylim(0, 1.05)
    ax.set_title(f"{name}: linear probes (3-fold)", fontsize=9), ax.legend(fontsize=5)


def _patching_panel(ax, name: str, res: Mapping) -> None:
    layers = np.arange(res["L"])
    ax.plot(layers, res["patch"], "o-", ms=3, label="share of logit difference moved")
    ax.plot(layers, res["flipped"], "s--", ms=3, label="answer flipped")
    ax.set_xlabel("layer patched"), ax.set_ylim(-0.1, 1.05), ax.legend(fontsize=6)
    ax.set_title(f"{name}: patching the final position's heads ({res['n_pairs']} pairs)", fontsize=9)


READSITE_PANELS = {"knockout": _knockout_panel, "dependence": _dependence_panel, "probes": _probes_panel,
                   "patching": _patching_panel}


def readsite_panels(results: Mapping[str, Mapping], measurement: str) -> Figure:
    """One of notebook 11's measurements (``knockout``, ``dependence``, ``probes`` or ``patching``),
    one panel per model, from the per-model results the notebook computes."""
    import matplotlib.pyplot as plt

    draw = READSITE_PANELS[measurement]
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        draw(ax, name, res)
    fig.tight_layout()
    return fig
