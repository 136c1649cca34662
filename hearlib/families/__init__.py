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
    cosmos3_omni, qwen2_5_omni,
    janus, deepseek_vl_hybrid,
    qwen3_5, minicpmv4_6, lfm2_vl, nemotron_h_omni, glm5_next,
    got_ocr2, idefics2, aria,
    hyperclovax_vision_v2,
    muse_glimmer, unlimited_ocr, molmo2,
    deepseek_ocr2, apertus1p5, emu3,
    granite_docling, granite4_vision,
    mllama, florence2,
    blip_2, kimi_k25, hunyuan_vl, fuyu,
    perception_lm,
)
