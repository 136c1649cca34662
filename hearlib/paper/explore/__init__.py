"""The head explorer (notebooks/00_explore): :mod:`.data` (panel data read from the store, the live
ablation, the head-set export), :mod:`.drawing` (figures and the widgets' fast renderers) and
:mod:`.ui` (the widgets, and :func:`~hearlib.paper.explore.ui.open_explorer`). The notebook only wires
them together, importing each name from its module.

:class:`Explorer` reads the records ``hearlib run`` collected for one (model, dataset) through
:class:`hearlib.paper.study.Study`, so under ``HEARLIB_READ_ONLY`` (or a filled store) it computes
nothing; a missing record shows as "not collected" with the command that fills it. Records are
cached per sample, so changing the sample or the head only redraws. Only :meth:`Explorer.load_model`
loads a model (the organism runs on CPU), after which :meth:`Explorer.live_pi` ablates a head set
with ``engine.normalized`` and the pipeline's mean keys/values, as the validation stage does.
"""
