"""Model families: the :class:`~hearlib.families.registry.Family` record and registry, one file per model
lineage holding its records, where their image tokens sit and their tiny-model specs
(:mod:`~hearlib.families.llava`, :mod:`~hearlib.families.qwen2_vl`, ...), the shared image-token geometry,
the checkpoints hearlib refuses and why, coverage checks, and the tiny random-weight models of every
family for tests (:mod:`~hearlib.families.tiny`, derived from each family's config class).

Importing this package registers every lineage's records in
:data:`hearlib.families.registry.FAMILIES`; the lineage files import the registry, never the reverse.
"""
from hearlib.families import (  # noqa: F401  (each registers its families)
    llava, qwen2_vl, internvl, gemma3, paligemma, mistral3, glm4v, aya_vision, idefics3, deepseek_vl,
    video_llama_3, paddleocr_vl, ovis2, exaone4_5, cohere_compass,
)
