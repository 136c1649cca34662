"""The paper's side: the catalogue of notebooks and items (data only), profiles and the study plan,
the run that collects the plan's records (``hearlib run``), the study object the notebooks use, the
aggregate analyses, plotting, the report (figures/README.md), rendering the notebooks, and the explorer."""
