"""Which of transformers' image-text-to-text model types hearlib covers, and why not the others.

:func:`coverage` walks ``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES`` of the installed transformers:
a model type with a record in :mod:`hearlib.families` is checked end to end on its tiny
random-weight model by :func:`check_family` (status ``works``, and what was checked); every other
model type gets the one-line reason of :data:`REASONS` (read from the transformers source of
that model type), or "not registered yet" where no reason is recorded. :func:`real_files` says
which model types tests/test_real_configs.py also runs at the real geometry of a published
checkpoint, from its hub files under tests/data/hub (``hearlib.testing.REAL_MODELS``). The table of
docs/MODELS.md ("Model types") is :func:`coverage_table`; ``python -m hearlib.coverage --write``
regenerates it (the check of every family takes about two minutes on two CPU cores).
"""
from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["REASONS", "CHECKS", "Coverage", "check_family", "coverage", "coverage_table", "real_files",
           "write_table"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "MODELS.md"
BEGIN, END = "<!-- coverage: begin -->", "<!-- coverage: end -->"

# What check_family establishes for a working family (the "checked" column).
CHECKS = ("prepare", "record", "fast = literal ≤ 1e-4", "all-intact = unpatched ≤ 1e-5",
          "own-image means: full ablation a no-op ≤ 1e-5", "image-token geometry")

# Kinds of refusal; each reason below starts with one.
ENCODER_DECODER = "encoder-decoder"
CROSS_ATTENTION = "image read by cross-attention"
TOKEN_MIXING = "token mixing outside softmax attention"
GENERATION = "not an image-to-text decoder"
NOT_YET = "not registered yet"
NO_TINY = "no tiny model constructible here"
BROKEN = "the transformers model does not run"

# model_type -> (kind, one line). Facts from transformers 5.24's models/<type>/ sources.
REASONS: dict[str, tuple[str, str]] = {
    # encoder-decoders: the text is produced by a decoder that reads the image through cross-attention
    "blip": (ENCODER_DECODER, "BLIP's text decoder reads the image embeddings through cross-attention layers"),
    "florence2": (ENCODER_DECODER, "the language model is BART (text_config model_type 'bart'): the answer "
                                   "comes from a decoder that cross-attends to the encoded image + prompt"),
    "pix2struct": (ENCODER_DECODER, "a T5-style encoder-decoder; the text decoder reads the image by cross-attention"),
    "udop": (ENCODER_DECODER, "a T5-style encoder-decoder over text, layout and image"),
    "t5gemma2": (ENCODER_DECODER, "T5Gemma 2 is an encoder-decoder; the decoder reads the encoded image by "
                                  "cross-attention"),
    "vision-encoder-decoder": (ENCODER_DECODER, "a generic vision encoder + text decoder joined by "
                                                "cross-attention"),
    "pp_formulanet": (ENCODER_DECODER, "an image encoder + an MBart-style decoder with cross-attention"),
    "kosmos-2.5": (NOT_YET, "image embeddings are placed into the text sequence at image_embeds_position_mask; "
                            "no AutoProcessor mapping for the model type; not registered yet"),
    "kosmos-2": (NOT_YET, "as Kosmos-2.5: image embeddings at image_embeds_position_mask positions, no "
                          "AutoProcessor mapping; not registered yet"),
    "evolla": (CROSS_ATTENTION, "a protein-text model, not an image model; the protein reaches the decoder "
                                "through cross-attention layers"),
    "mllama": (CROSS_ATTENTION, "the image reaches text only through MllamaTextCrossAttention layers "
                                "(no image tokens in the self-attention sequence)"),
    "idefics": (CROSS_ATTENTION, "Idefics (1) reads the image through gated cross-attention blocks "
                                 "(IdeficsGatedCrossAttentionLayer)"),
    "blip-2": (CROSS_ATTENTION, "a Q-Former reads the image by cross-attention; the decoder may be an "
                                "encoder-decoder (OPT or Flan-T5)"),
    "instructblip": (CROSS_ATTENTION, "as BLIP-2: a Q-Former reads the image by cross-attention, decoder "
                                      "OPT/Llama or Flan-T5"),
    "instructblipvideo": (CROSS_ATTENTION, "as InstructBLIP, for video"),
    # decoders whose token mixing is not (only) softmax self-attention
    "lfm2_vl": (TOKEN_MIXING, "the LFM2 decoder mixes tokens with short convolutions in most layers "
                              "(Lfm2ShortConv)"),
    "qwen3_5": (TOKEN_MIXING, "Qwen3.5's decoder interleaves Gated DeltaNet linear-attention layers with "
                              "full attention"),
    "qwen3_5_moe": (TOKEN_MIXING, "as Qwen3.5: Gated DeltaNet linear-attention layers in the decoder"),
    "granite4_vision": (NOT_YET, "a LLaVA-NeXT-style wrapper (CLIP tower, image_newline) whose projector is a "
                                 "windowed BLIP-2 Q-Former; layout not written yet"),
    "nemotron_h_omni": (TOKEN_MIXING, "the decoder is Nemotron-H (text_config 'nemotron_h'), a hybrid with Mamba "
                                      "state-space layers"),
    "llama4": (BROKEN, "Llama4ForConditionalGeneration.forward in this transformers reads outputs.image_outputs, "
                       "which MoeCausalLMOutputWithPast lacks: every forward raises AttributeError (a record, "
                       "tiny model and layout are in commit history, ready when that is fixed)"),
    "deepseek_vl_hybrid": (NOT_YET, "two vision towers (SigLIP + a SAM high-resolution neck) feed one decoder; "
                                    "not registered yet"),
    "aria": (NOT_YET, "the projector's learned queries cross-attend to the vision features (AriaCrossAttention) "
                      "before the decoder, whose token mixing is self-attention; not registered yet"),
    "chameleon": (NOT_YET, "images enter as discrete VQ-VAE codes (ChameleonVQVAE) embedded as ordinary tokens; "
                           "not registered yet"),
    "emu3": (NOT_YET, "images enter as discrete VQ-VAE codes (Emu3VQVAE) embedded as ordinary tokens; not "
                      "registered yet"),
    "janus": (NOT_YET, "SigLIP features for understanding plus a VQ-VAE (JanusVQVAE) for image generation; not "
                       "registered yet"),
    "idefics2": (NOT_YET, "a Perceiver resampler (Idefics2PerceiverResampler) turns each image into a fixed set of "
                          "latents without a grid on the image; a layout would have no geometry"),
    "gemma3n": (NOT_YET, "later decoder layers reuse earlier layers' keys/values (num_kv_shared_layers) and the "
                         "hidden state runs as AltUp streams (Gemma3nTextAltUp); not registered yet"),
    "gemma4": (NOT_YET, "later decoder layers reuse earlier layers' keys/values (num_kv_shared_layers); not "
                        "registered yet"),
    "ernie4_5_vl_moe": (NOT_YET, "a variable-resolution resampler and a mixture-of-experts decoder; not registered yet"),
    "perception_lm": (NO_TINY, "the vision tower is a TimmWrapperModel (vision_config 'timm_wrapper'), and timm is "
                               "not installed in hearlib's environment"),
    "got_ocr2": (NOT_YET, "a SAM-style windowed ViT whose strided-convolution neck mixes neighbouring patches "
                          "before the decoder; not registered yet"),
    "fast_vlm": (NOT_YET, "AutoProcessor maps no processor to fast_vlm; not registered yet"),
    "qwen2_5_omni_thinker": (NOT_YET, "the thinker of the Qwen2.5-Omni audio/video/image model; AutoProcessor maps "
                                      "no processor to this model type; not registered yet"),
    "qwen3_omni_moe_thinker": (NOT_YET, "the thinker of the Qwen3-Omni MoE model; AutoProcessor maps no processor "
                                        "to this model type; not registered yet"),
    "mistral4": (GENERATION, "mapped to Mistral4ForCausalLM, a text-only causal LM: the class has no vision "
                             "input, so there is no image to attribute"),
    "glmga": (NOT_YET, "mapped to Glm46VForConditionalGeneration (registered as glm46v) but AutoProcessor maps no "
                       "processor to glmga; not registered under this name"),
    "pp_chart2table": (NOT_YET, "GOT-OCR2's model class with PaddlePaddle's chart-to-table processor; not "
                                "registered yet"),
    "cosmos3_omni": (NOT_YET, "AutoProcessor maps no processor to cosmos3_omni; not registered yet"),
    "glm_ocr": (NOT_YET, "AutoProcessor maps no processor to glm_ocr; not registered yet"),
    "glm5_next": (TOKEN_MIXING, "the decoder has linear-attention layers (Glm5NextTextLinearAttention)"),
    "qwen4_exp": (TOKEN_MIXING, "the decoder has Gated DeltaNet linear-attention layers (Qwen4ExpTextGatedDeltaNet)"),
    "minicpmv4_6": (TOKEN_MIXING, "the decoder is Qwen3.5 (text_config 'qwen3_5_text') with Gated DeltaNet "
                                  "linear-attention layers"),
    "minicpmv4_7": (TOKEN_MIXING, "the decoder is Qwen3.5 (text_config 'qwen3_5_text') with Gated DeltaNet "
                                  "linear-attention layers"),
    "minicpm_ocr": (TOKEN_MIXING, "the decoder is Qwen3.5 (text_config 'qwen3_5_text') with Gated DeltaNet "
                                  "linear-attention layers"),
    "lfm3_vl": (TOKEN_MIXING, "the LFM3 decoder (text_config 'lfm3') mixes tokens with short convolutions "
                              "(Lfm3ShortConv)"),
    "inkling_mm_model": (TOKEN_MIXING, "the decoder's attention runs short causal convolutions over keys and values "
                                       "along the sequence (InklingShortConvolution)"),
    "inkling2": (TOKEN_MIXING, "the decoder runs short causal convolutions along the sequence in attention and "
                               "after it (Inkling2ShortConvolution)"),
    "inkling2_loop": (TOKEN_MIXING, "as Inkling 2: short causal convolutions along the sequence "
                                    "(Inkling2LoopShortConvolution)"),
    "granite_docling": (NOT_YET, "Idefics3-style tiles (pixel shuffle) with a coarse path and DeepStack mergers "
                                 "(GraniteDoclingDeepStackMerger); layout not written yet"),
    "hunyuan_vl": (NOT_YET, "the image block is rows × (cols + a newline) + 2 extra tokens, all with the image "
                            "token id (HunYuanVLProcessor.replace_image_token); layout not written yet"),
    # generation models
    "diffusion_gemma": (GENERATION, "a block-diffusion text model (DiffusionGemmaForBlockDiffusion), not an "
                                    "autoregressive next-token logit"),
    "pi0": (GENERATION, "a vision-language-action policy: the output is actions from an action expert "
                        "(dit_config), not an answer token"),
    "shieldgemma2": (NOT_YET, "Gemma3ForConditionalGeneration scoring images against safety policies: "
                              "ShieldGemma2Processor ignores the text and writes one policy prompt per policy, so "
                              "HeAr's question prompt cannot be posed; the gemma3 record fits the model itself"),
    "fuyu": (NOT_YET, "no vision tower: image patches are linearly embedded into the decoder and a "
                      "newline token ends each row inside the image block; not registered yet"),
    "git": (NOT_YET, "GitForCausalLM is one BERT-style stack over image + text (images bidirectional, text "
                     "causal), not a wrapper around a language model; not registered yet"),
}


@dataclass(frozen=True)
class Coverage:
    """One row of the coverage table."""

    model_type: str
    status: str          # "works" or the kind of refusal
    checked: str         # what was checked ("" when refused)
    reason: str          # why not; for a working type the family's name and note
    real: str = ""       # the hub folders whose real geometry tests/test_real_configs.py runs ("" when none)


def check_family(model_type: str, folder: Path | None = None, seed: int = 0) -> str:
    """Build the family's tiny model and check it end to end; the list of checks, or AssertionError.

    prepare and record a sample; fast = literal on random head/text/image masks (≤ 1e-4, masks
    that move the logit); all-intact masks = the unpatched model (eager attention, ≤ 1e-5); means
    from the sample's own image make full ablation a no-op (≤ 1e-5); the image-token layout names
    every image token once."""
    from PIL import Image

    import torch

    from hearlib.geometry import image_token_layout
    from hearlib.means import compute_means
    from hearlib.models import load_engine
    from hearlib.testing import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(build_tiny(model_type, Path(folder or tmp), seed=seed))
        rng = np.random.default_rng(seed)
        images = [Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")) for _ in range(3)]
        sample = engine.prepare(images[0], answer="dog")
        record = engine.record(sample)
        means = compute_means(engine, images[1:], progress=False)
        heads = rng.random((4, engine.n_total_heads)) > 0.5
        text = rng.random((4, sample.n_text)) > 0.3
        image = rng.random((4, sample.n_image)) > 0.3
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # a prefix-LM runs the literal path, and says so
            fast = engine.logits(sample, means, heads, text, image, method="fast")
        literal = engine.logits(sample, means, heads, text, image, method="literal")
        assert np.abs(fast - literal).max() <= 1e-4, f"fast − literal = {np.abs(fast - literal).max():.2e}"
        assert np.ptp(literal) > 1e-3, "the masks did not move the logit"
        model = engine.model
        model.set_attn_implementation({engine.family.text_config: "eager"})
        try:
            with torch.no_grad():
                logits = model(**sample.inputs).logits[0, -1].double()
        finally:
            model.set_attn_implementation({engine.family.text_config: "hear"})
        expected = float(logits[sample.answer_id] - logits.mean())
        intact = np.ones((1, engine.n_total_heads), bool)
        for method in ("fast", "literal"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got = engine.logits(sample, means, intact, method=method)[0]
            assert abs(got - expected) <= 1e-5, f"intact {method} {got} vs unpatched {expected}"
        assert abs(record.logit - expected) <= 1e-5
        own = compute_means(engine, [images[0]], progress=False)
        ablated = np.zeros((1, engine.n_total_heads), bool)
        for method in ("fast", "literal"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got = engine.logits(sample, own, ablated, method=method)[0]
            assert abs(got - record.logit) <= 1e-5, f"own-image {method} ablation {got} vs intact {record.logit}"
        layout = image_token_layout(engine, sample)
        assert layout.n_tokens == sample.n_image
    path = "fast path" if engine.fast_path_problem(sample) is None else "literal path (fast premise fails)"
    return "; ".join(CHECKS) + f"; {sample.n_image} image tokens; {path}"


def real_files() -> dict[str, list[str]]:
    """model_type -> the folders under tests/data/hub (``hearlib.testing.REAL_MODELS``) whose real
    config, processor and tokenizer files tests/test_real_configs.py builds a random-weight model of
    (depth cut, widths and heads as published) and runs end to end; "(stand-in tokenizer)" after a
    folder whose tokenizer files are not committed (``hearlib.testing.has_real_tokenizer``)."""
    import json

    from hearlib.testing import REAL_HUB, REAL_MODELS, has_real_tokenizer

    found: dict[str, list[str]] = {}
    for name, folder in REAL_MODELS.items():
        model_type = json.loads((REAL_HUB / folder / "config.json").read_text())["model_type"]
        found.setdefault(model_type, []).append(
            f"`{folder}`" + ("" if has_real_tokenizer(name) else " (stand-in tokenizer)"))
    return found


def model_types() -> list[str]:
    """Every model type transformers maps to AutoModelForImageTextToText."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return list(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def coverage(check=check_family) -> list[Coverage]:
    """One row per image-text-to-text model type: registered families checked by ``check``."""
    from hearlib.families import FAMILIES

    rows = []
    real = real_files()
    for model_type in model_types():
        if model_type in FAMILIES:
            family = FAMILIES[model_type]
            rows.append(Coverage(model_type, "works", check(model_type), f"{family.name}: {family.note}",
                                 ", ".join(real.get(model_type, []))))
        else:
            kind, reason = REASONS.get(model_type, (NOT_YET, "no family record; its transformers source has not "
                                                              "been examined for hearlib yet"))
            rows.append(Coverage(model_type, kind, "", reason))
    return rows


def coverage_table(rows: list[Coverage]) -> str:
    """The Markdown section of docs/MODELS.md between the coverage markers."""
    works = sum(r.status == "works" for r in rows)
    real = sum(bool(r.real) for r in rows)
    lines = [BEGIN, f"{works} of {len(rows)} model types work; generated by `python -m hearlib.coverage --write` "
                    "(checked by `tests/test_coverage.py`). \"Real geometry\": the hub files under "
                    f"`tests/data/hub/` whose geometry `tests/test_real_configs.py` runs end to end ({real} model "
                    "types); \"no\": checked on the tiny model only.", "",
             "| model type | status | checked on the tiny model | real geometry (hub files) | "
             "family and note, or why not |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        real_cell = r.real or ("no" if r.status == "works" else "")
        lines.append(f"| `{r.model_type}` | {r.status} | {r.checked} | {real_cell} | {r.reason} |")
    return "\n".join(lines + [END]) + "\n"


def replace_table(doc: str, table: str) -> str:
    """``doc`` with its coverage section replaced by ``table`` (appended if absent)."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: table, doc)
    return doc.rstrip("\n") + "\n\n## Model types in transformers\n\n" + table


def write_table(rows: list[Coverage], doc: Path = DOC) -> None:
    doc.write_text(replace_table(doc.read_text(), coverage_table(rows)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into docs/MODELS.md")
    args = parser.parse_args(argv)
    rows = coverage()
    if args.write:
        write_table(rows)
    print(coverage_table(rows))


if __name__ == "__main__":
    main()
