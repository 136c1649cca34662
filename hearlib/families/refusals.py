"""Why hearlib does not run a model type: the kinds of refusal and one line per model type.

Data only (read from each model type's transformers 5.24 source), so that both
:mod:`hearlib.families.registry` (refusing a type on load, :func:`hearlib.families.registry.family_of`) and
:mod:`hearlib.paper.coverage` (the table of docs/MODELS.md) read the same reasons without importing
each other. Registering a family means removing its entry here.
"""
from __future__ import annotations

__all__ = ["REASONS", "ENCODER_DECODER", "CROSS_ATTENTION", "TOKEN_MIXING", "GENERATION", "NOT_YET",
           "NO_TINY", "BROKEN"]

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
