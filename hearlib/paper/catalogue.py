"""The study's notebooks, in order, as data: the plan groups each reads and the items each registers.

:data:`NOTEBOOKS` is the one list of notebooks (dependency order) with the plan groups each reads
(:mod:`hearlib.paper.plan`); the Makefile, the tests and the README follow it. Rendering them is
:mod:`hearlib.paper.render`. This module imports nothing, so any module may read it.
"""
from __future__ import annotations

__all__ = ["GROUPS", "NOTEBOOKS", "ITEMS", "EXPLORERS", "REPORTING", "REPORT_SETTINGS"]

# what `hearlib run --stages` collects (see hearlib.paper.plan)
GROUPS = ("attribution", "validation", "text", "image", "lens", "prompts", "domains", "explore", "questions",
          "organisms", "readsite", "using")

NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "00_explore": ("attribution", "validation", "lens", "explore"),
    "01_head_ablation": ("validation",),
    "02_head_attribution": ("attribution", "validation", "lens"),
    "03_validation": ("validation",),
    "04_tsne": ("attribution",),
    "05_text_tokens": ("text",),
    "06_image_tokens": ("image",),
    "07_domainnet": ("domains",),
    "08_prompt_robustness": ("prompts",),
    "09_question_types": ("questions",),
    "10_organisms": ("organisms",),
    "11_where_the_read_happens": ("readsite",),
    "12_using_heads": ("attribution", "validation", "using"),
}

# the paper items (and the project's own, beyond the paper) each notebook must register: the browser
# test and tests/paper/test_figures.py expect these, not what a notebook happened to register
ITEMS: dict[str, tuple[str, ...]] = {
    "01_head_ablation": ("Fig. 7",),
    "02_head_attribution": ("Fig. 2", "Fig. 3C", "Fig. 3D", "Fig. 8", "Fig. 12", "Fig. 14", "Table 2"),
    "03_validation": ("Fig. 3A", "Fig. 3B", "Fig. 5", "Fig. 6", "Fig. 11"),
    "04_tsne": ("Fig. 3E", "Fig. 10", "Fig. 13"),
    "05_text_tokens": ("Fig. 4A", "Fig. 15", "Table 3"),
    "06_image_tokens": ("Fig. 4B", "Fig. 4C", "Fig. 16", "Fig. 17"),
    "07_domainnet": ("Fig. 9A", "Fig. 9B", "Fig. 9C", "Fig. 9D", "Fig. 9E"),
    "08_prompt_robustness": ("Table 1",),
    "09_question_types": ("Question types (beyond the paper)",),
    "10_organisms": ("Organisms",),
    "11_where_the_read_happens": ("Where the read happens (beyond the paper)",),
    "12_using_heads": ("Using the heads (beyond the paper)",),
}

# notebooks that draw no paper item, so write no report (``<out>/.report/``) and no README row
EXPLORERS = ("00_explore",)
# the notebooks whose reports make up RESULTS.md and the published figures/README.md
REPORTING = tuple(name for name in NOTEBOOKS if name not in EXPLORERS)

# the parameters each reporting notebook writes into its report's settings (beside the profile, the
# model, the data, R and HeAr's n_masks / ratio / seed; hearlib.paper.notebook.open_notebook)
REPORT_SETTINGS: dict[str, tuple[str, ...]] = {
    "01_head_ablation": ("n_samples",),
    "02_head_attribution": ("n_samples", "n_size_samples"),
    "03_validation": ("n_samples", "n_size_samples", "n_ratio_samples"),
    "04_tsne": ("per_class", "min_per_class", "n_tsne_samples"),
    "05_text_tokens": ("n_samples", "n_size_samples", "threshold", "token_threshold"),
    "06_image_tokens": ("n_image_samples", "threshold", "token_threshold", "n_image_masks", "image_ratio"),
    "07_domainnet": ("domains", "n_domain_samples"),
    "08_prompt_robustness": ("n_prompt_samples",),
    "09_question_types": ("n_question_samples",),
    "10_organisms": ("n_size_samples", "n_size_tsne_samples", "n_organism_prompt_samples"),
    "11_where_the_read_happens": ("n_readsite_samples", "n_size_samples"),
    "12_using_heads": ("n_samples", "n_using_samples", "head_set_sizes", "random_sets", "scales", "max_new_tokens"),
}
