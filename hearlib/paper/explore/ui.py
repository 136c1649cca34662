"""The explorer's widgets (ipywidgets) and :func:`open_explorer`, which builds an
:class:`~hearlib.paper.explore.data.Explorer` for a (model, dataset) in a store."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hearlib.errors import UserError
from hearlib.paper.analysis import head_name
from hearlib.paper.explore.data import Explorer, export_head_set
from hearlib.paper.explore.drawing import (attention_png, default_export_path, draw_curves, draw_models, figure_png,
                                           head_html, items_label, sample_html, sample_png, stability_text)


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
    live ablation and the export; below, the model's mean θ over its samples with how stable it is,
    and a second model's beside it (``hearlib heads diff`` where the geometries agree).
    ``opener(model, data) -> Explorer``; ``widget`` is what to display."""

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
        self.beside = W.Dropdown(options=[("(none)", "")] + [(str(m), str(m)) for m in models],
                                 description="beside", style={"description_width": "initial"})
        self.models_view = W.Image(format="png")
        self.models_text = W.HTML()
        self.live_pi: float | None = None
        self.model.observe(lambda _: self._open(), "value")
        self.data.observe(lambda _: self._open(), "value")
        # programmatic updates set _busy; unobserve_all would also drop the widgets' own
        # value -> index observers (ipywidgets 8), leaving the page's dropdown blank and dead
        self.sample.observe(lambda change: None if self._busy else self.set_sample(change["new"]), "value")
        self.head_list.observe(lambda change: None if self._busy else self.set_head(change["new"]), "value")
        self.k.observe(lambda change: None if self._busy else self.set_k(change["new"]), "value")
        self.beside.observe(lambda _: self.show_models(), "value")
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
            self.live, self.curves_view, self.export_info,
            W.HTML("<b>the model over its samples</b>: mean θ, x* of at least half the samples outlined; "
                   "pick a model to set beside it"), self.beside, self.models_text, self.models_view])
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
        self.show_models()

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

    def show_models(self):
        """The model's mean θ map and stability; with ``beside`` chosen, that model's next to it."""
        try:
            a = self.ex.head_document()
            other = self.beside.value
            b = None
            if other and other != self.model.value:
                key = (other, self.data.value)
                if key not in self._explorers:
                    self._explorers[key] = self._opener(*key)
                b = self._explorers[key].head_document()
        except UserError as error:
            self.models_text.value = f"<span style='color:#b00'>{error}</span>"
            self.models_view.value = b""
            return
        lines = [f"<b>{a['model_id']}</b>: {stability_text(a)}"]
        if b is not None:
            lines.append(f"<b>{b['model_id']}</b>: {stability_text(b)}")
            if (a["n_layers"], a["n_heads"]) != (b["n_layers"], b["n_heads"]):
                lines.append(f"different geometries ({a['n_layers']}×{a['n_heads']} and {b['n_layers']}×"
                             f"{b['n_heads']}): the two maps side by side, no head-by-head diff")
        self.models_text.value = "<br>".join(lines)
        self.models_view.value = figure_png(draw_models(a, b))

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
