"""The head explorer (notebooks/00_explore): :mod:`.data` (panel data read from the store, the live
ablation, the head-set export), :mod:`.drawing` (figures and the widgets' fast renderers) and
:mod:`.ui` (the widgets). The notebook only wires them together.

:class:`Explorer` reads the records ``hearlib run`` collected for one (model, dataset) through
:class:`hearlib.paper.study.Study`, so under ``HEARLIB_READ_ONLY`` (or a filled store) it computes
nothing; a missing record shows as "not collected" with the command that fills it. Records are
cached per sample, so changing the sample or the head only redraws. Only :meth:`Explorer.load_model`
loads a model (the organism runs on CPU), after which :meth:`Explorer.live_pi` ablates a head set
with ``engine.normalized`` and the pipeline's mean keys/values, as the validation stage does.
"""
from hearlib.paper.explore.data import EXPORT_VERSION, Explorer, HeadPanel, export_head_set, load_head_set, parse_head  # noqa: F401
from hearlib.paper.explore.drawing import (attention_png, default_export_path, draw_curves, draw_head,  # noqa: F401
                                           draw_models, draw_overview, draw_static, figure_png, head_html,
                                           items_label, sample_html, sample_png, stability_text)
from hearlib.paper.explore.ui import ExplorerUI, open_explorer  # noqa: F401

__all__ = ["Explorer", "HeadPanel", "export_head_set", "load_head_set", "figure_png", "draw_overview",
           "draw_head", "draw_curves", "draw_static", "draw_models", "stability_text", "parse_head", "ExplorerUI", "open_explorer"]
