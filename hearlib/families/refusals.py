"""Why hearlib does not run a model type: the kinds of refusal and one line per model type.

Data only (read from each model type's transformers 5.24 source), so that both
:mod:`hearlib.families.registry` (refusing a type on load, :func:`hearlib.families.registry.family_of`) and
:mod:`hearlib.paper.coverage` (the table of docs/MODELS.md) read the same reasons without importing
each other. Registering a family means removing its entry here.
"""
from __future__ import annotations

__all__ = ["REASONS", "ENCODER_DECODER", "CROSS_ATTENTION", "GENERATION", "NOT_YET", "NO_TINY", "BROKEN",
           "PROCESSOR_INPUTS", "NO_LAYOUT", "PER_LAYER_HEADS", "SPARSE_SELECTION", "DECODER_INPUTS",
           "PER_LAYER_SHAPES", "TOKEN_ROUTING", "ATTENTION_BIAS", "NO_FINAL_NORM"]

# Kinds of refusal; each reason below starts with one.
ENCODER_DECODER = "encoder-decoder"
CROSS_ATTENTION = "image read by cross-attention"
GENERATION = "not an image-to-text decoder"
NOT_YET = "not registered yet"
NO_TINY = "no tiny model constructible here"
BROKEN = "the transformers model does not run"
PROCESSOR_INPUTS = "the processor does not take the engine's inputs"
NO_LAYOUT = "fits HeAr's premise; its tiny model is not written yet"
PER_LAYER_HEADS = "query-head count differs between decoder layers"
SPARSE_SELECTION = "sparse key selection the engine's attention does not apply"
DECODER_INPUTS = "the decoder does not take the image as inputs_embeds at image-token ids"
PER_LAYER_SHAPES = "attention shapes differ between decoder layers"
TOKEN_ROUTING = "the decoder routes text positions by token types the engine's text-only forward does not pass"
ATTENTION_BIAS = "an additive attention bias the engine's attention plans do not apply"
NO_FINAL_NORM = "no final norm of a single hidden state (the record's final_norm)"

# model_type -> (kind, one line). Facts from transformers 5.24's models/<type>/ sources.
REASONS: dict[str, tuple[str, str]] = {
    # encoder-decoders: the text is produced by a decoder that reads the image through cross-attention
    "blip": (ENCODER_DECODER, "BLIP's text decoder reads the image embeddings through cross-attention layers"),
    "pix2struct": (ENCODER_DECODER, "its encoder reads only flattened image patches (Pix2StructProcessor renders a VQA "
                                    "question into the image as header_text; no input_ids, no image token id), so the "
                                    "image positions Family.encoder_decoder reads from the encoder's input ids and the "
                                    "prompt do not exist"),
    "udop": (ENCODER_DECODER, "a T5-style encoder-decoder over text, layout and image"),
    "t5gemma2": (ENCODER_DECODER, "its decoder layers attend with T5Gemma2MergedAttention: one softmax over the "
                                  "decoder's own keys and the encoder's concatenated ([self | cross], one merged mask), "
                                  "not a cross-attention call of its own as Family.encoder_decoder covers (BART's "
                                  "encoder_attn)"),
    "vision-encoder-decoder": (ENCODER_DECODER, "a generic vision encoder + text decoder joined by "
                                                "cross-attention"),
    "pp_formulanet": (ENCODER_DECODER, "an image encoder + an MBart-style decoder with cross-attention"),
    "kosmos-2.5": (DECODER_INPUTS, "as Kosmos-2: Kosmos2_5TextTransformer is called with input_ids, image_embeds "
                                   "and image_embeds_position_mask and embeds them itself; the config has no "
                                   "image token id"),
    "kosmos-2": (DECODER_INPUTS, "Kosmos2TextTransformer is called with input_ids and image_embeds and writes them "
                                 "in itself (forward_embedding: inputs_embeds[img_input_mask] = image_embeds, then "
                                 "× embed_scale + sinusoidal positions); the image positions are "
                                 "image_embeds_position_mask, the config has no image token id"),
    "evolla": (CROSS_ATTENTION, "a protein-text model, not an image model; the protein reaches the decoder "
                                "through cross-attention layers"),
    "idefics": (CROSS_ATTENTION, "Idefics (1) reads the image through gated cross-attention blocks "
                                 "(IdeficsGatedCrossAttentionLayer)"),
    "instructblipvideo": (PROCESSOR_INPUTS, "InstructBlipVideoProcessor.__init__ drops chat_template, and it takes a "
                                            "4-frame video (num_query_tokens × 4 <video> tokens), not one image"),
    # decoders whose token mixing is not (only) softmax self-attention
    "llama4": (BROKEN, "Llama4ForConditionalGeneration.forward in this transformers reads outputs.image_outputs, "
                       "which MoeCausalLMOutputWithPast lacks: every forward raises AttributeError (a record, "
                       "tiny model and layout are in commit history, ready when that is fixed)"),
    "chameleon": (DECODER_INPUTS, "ChameleonVQVAE quantises a 512 px image (16× down: 32 × 32 = image_seq_length 1024 "
                             "codes) and the codes' IMGIMG… ids replace the <image> placeholders before embedding, so "
                             "the decoder reads them by self-attention; but ChameleonConfig is flat (no text_config: "
                             "the decoder's sizes are top-level), which Family.text_config and the tiny builder's "
                             "text/vision split cannot name yet, and the tiny tokenizer needs the codebook's IMGIMG "
                             "tokens; the decoder is ChameleonModel itself, which embeds input_ids and writes the "
                             "codes' embeddings inside its forward, so it is never called with the inputs_embeds "
                             "from which Engine.record takes the text embeddings; and ChameleonProcessor.__init__ "
                             "(image_processor, tokenizer, image_seq_length, image_token) takes no chat_template, "
                             "which tiny.tiny_processor passes (Family.chat_template would give the prompt format)"),
    "gemma4": (PER_LAYER_SHAPES, "full-attention layers have heads of global_head_dim (512) and sliding ones of "
                                 "head_dim (256) through per_layer_config, so text_config.head_dim raises "
                                 "AmbiguousGlobalPerLayerAttributeError; and under logits_to_keep=1 "
                                 "Gemma4TextModel._maybe_slice_kv_shared_inputs runs the num_kv_shared_layers layers "
                                 "on the last position only, which the engine's full-sequence plans do not follow"),
    "ernie4_5_vl_moe": (TOKEN_ROUTING, "Ernie4_5_VLMoeMoeBlock sends tokens with moe_mm_token_type_ids ≠ 0 to "
                                       "vision_moe, and the processor marks the image start and end tokens so "
                                       "(create_moe_mm_token_type_ids); the end token follows the last image token, "
                                       "so the fast path's text-only decoder call, which passes no "
                                       "moe_mm_token_type_ids, would run it through text_moe"),
    "got_ocr2": (PROCESSOR_INPUTS, "GotOcr2Processor raises 'Nested images are only supported with `multi_page` "
                                   "set to `True`' on the one-list-per-text images the engine passes for a batch "
                                   "of reference images (the model, layout and prompt fit: see pp_chart2table)"),
    "mistral4": (GENERATION, "mapped to Mistral4ForCausalLM, a text-only causal LM: the class has no vision "
                             "input, so there is no image to attribute"),
    "qwen4_exp": (NO_FINAL_NORM, "Qwen4ExpTextModel ends in hyper_connection_mixer (Qwen4ExpTextGatedResidual: a "
                                 "grouped RMSNorm over hc_count × hidden_size streams, sigmoid mix weights, mean over "
                                 "the streams), no norm of weight [hidden_size] that the logit lens can apply to a "
                                 "head's output (otherwise it fits: QSA top-k reaches the attention function as a "
                                 "mask, Gated DeltaNet layers as a hybrid)"),
    "inkling_mm_model": (ATTENTION_BIAS, "InklingAttention passes position_bias= (InklingRelativeLogits: a per-head "
                                         "bias by query-key distance from each query's r_proj state) to the attention "
                                         "function, which hearlib's plans ignore; its k_sconv/v_sconv convolutions run "
                                         "before the attention function (keys/values well defined), attn_sconv and "
                                         "mlp_sconv convolve every layer's outputs along the sequence"),
    "inkling2": (ATTENTION_BIAS, "Inkling2SlidingAttention and Inkling2FullAttention pass position_bias= "
                                 "(Inkling2RelativePositionBias) to the attention function, which hearlib's plans "
                                 "ignore; the key/value short convolutions (Inkling2KeyValueProjection.sconv) run "
                                 "before it, post_attention/post_mlp_convolution along the sequence after it"),
    "inkling2_loop": (ATTENTION_BIAS, "as Inkling 2 (position_bias= to the attention function), and layers "
                                      "loop_layer_index_start..end run loop_num_passes times per forward with one "
                                      "layer_idx, so a head's keys/values differ between passes"),
    "cosmos3_edge": (PROCESSOR_INPUTS, "Cosmos3EdgeProcessor keeps ProcessorMixin's return_mm_token_type_ids = "
                                       "False, so processor(images=, text=) returns no mm_token_type_ids, and "
                                       "Cosmos3EdgeModel.compute_3d_position_ids raises ValueError without them "
                                       "(otherwise Qwen-style: SigLIP2 tower, 2 × 2 merger, M-RoPE softmax decoder)"),
    "dots3_note": (SPARSE_SELECTION, "Dots3NoteTextAttention's DSA indexer (Dots3NoteTextIndexer, index_topk) "
                                     "narrows the mask only for eager/sdpa; any other attention function gets the "
                                     "top-k as indices= and attends densely once a sequence exceeds index_topk"),
    "hy_v4_vl": (SPARSE_SELECTION, "HYV4VLAttention's DSA indexer (HYV4VLIndexer, index_topk; 'shared' layers reuse "
                                   "the previous top-k) narrows the mask only for eager/sdpa; any other attention "
                                   "function gets the top-k as indices= and attends densely past index_topk"),
    "minimax_m3_vl": (SPARSE_SELECTION, "MiniMaxM3VLAttention on 'minimax_m3_sparse' layers picks key blocks "
                                        "(MiniMaxM3VLIndexer, index_topk_blocks + index_local_blocks) and builds "
                                        "the block mask only for eager/sdpa; any other attention function gets "
                                        "block_indices= and attends densely"),
    "mistral_large4": (SPARSE_SELECTION, "MistralLarge4TextAttention's DSA indexer (MistralLarge4TextIndexer, "
                                         "index_topk 2048) narrows the mask only for eager/sdpa; any other attention "
                                         "function gets the top-k as indices= and attends densely past index_topk "
                                         "(also MLA with kv_sharing_modes across layers)"),
    "gemma4_unified": (PER_LAYER_SHAPES, "as Gemma 4: Gemma4UnifiedTextConfig.__post_init__ always writes "
                                         "per_layer_config with head_dim = global_head_dim (512) on full-attention "
                                         "layers (sliding: head_dim 256), so text_config.head_dim raises "
                                         "AmbiguousGlobalPerLayerAttributeError and the layers' image keys/values "
                                         "cannot be stacked; num_kv_shared_layers > 0 also slices the shared layers "
                                         "to logits_to_keep (_maybe_slice_kv_shared_inputs). The image itself fits: "
                                         "one token per 48 px merged patch, embedded alone (Gemma4UnifiedVisionEmbedder)"),
    "step3p7": (PER_LAYER_HEADS, "Step3p7DecoderLayer builds each attention from config.per_layer_config[layer_idx]: "
                                 "sliding layers take num_sliding_attention_heads (the hub config's "
                                 "attention_other_setting), full layers num_attention_heads; the engine's head "
                                 "index n = l·H + h assumes one H (also a per-head sigmoid output gate g_proj and "
                                 "global + local crops with <patch_newline>)"),
    # generation models
    "diffusion_gemma": (GENERATION, "a block-diffusion text model (DiffusionGemmaForBlockDiffusion), not an "
                                    "autoregressive next-token logit"),
    "pi0": (GENERATION, "a vision-language-action policy: the output is actions from an action expert "
                        "(dit_config), not an answer token"),
    "shieldgemma2": (PROCESSOR_INPUTS, "ShieldGemma2Processor.__call__ never reads its text argument: it writes one "
                                       "prompt per safety policy (policy_definitions, policies, custom_policies) "
                                       "through its own template, so the engine's question cannot be posed; the model "
                                       "(Gemma3ForConditionalGeneration) is the registered gemma3 record's"),
    "git": (DECODER_INPUTS, "GitModel.forward concatenates the projected image features before the text "
                            "embeddings (torch.cat((projected_visual_features, embedding_output))): input_ids hold "
                            "no image token (GitConfig has no image token id), and GitSelfAttention computes its "
                            "softmax itself instead of through ALL_ATTENTION_FUNCTIONS"),
}
