"""The paper's side: the catalogue of notebooks and items, profiles and plans, the study object the
notebooks use, the aggregate analyses, plotting, the report (figures/README.md) and the explorer."""
