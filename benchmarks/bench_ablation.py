"""Literal against fast mean ablation, timed in one run.

Default: a LLaVA-1.5-shaped model (336 px CLIP-style tower with patch 14 -> 576 image
tokens, the LLaVA-1.5 prompt template) with random weights, decoder width and depth reduced
to fit a CPU. Prints masks/s for both methods, their ratio, seconds per sample for M masks,
and the fast path's share of this machine's measured matmul peak.

``--full-size`` builds the LLaVA-1.5-7B shape (CLIP ViT-L/14-336, 32 × 32 heads, width 4096)
with random weights, in bf16 on a GPU, and times M = 10,000 masks (no download).

    python benchmarks/bench_ablation.py [--masks 512] [--literal-masks 8] [--full-size]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearlib.method.engine import Engine  # noqa: E402
from hearlib.prompts import PAPER_PROMPT  # noqa: E402
from hearlib.method.means import compute_means  # noqa: E402
from hearlib.method.masks import sample_head_masks  # noqa: E402
from hearlib.families.templates import LLAVA_TEMPLATE  # noqa: E402  (LLaVA-1.5: USER: <image>\n… ASSISTANT:)

PAPER_SECONDS_PER_SAMPLE = 0.81 * 3600   # 0.81 GPU-hours per image, 10,000 masks, LLaVA-1.5-7B

CPU_SHAPE = dict(hidden=512, layers=8, heads=8, kv_heads=8, intermediate=1376, vocab=32000,
                 vision_hidden=64, vision_layers=2, vision_heads=2)
FULL_SHAPE = dict(hidden=4096, layers=32, heads=32, kv_heads=32, intermediate=11008, vocab=32064,
                  vision_hidden=1024, vision_layers=24, vision_heads=16)


def build_llava15_shape(shape: dict, folder: Path, device: str, dtype: torch.dtype) -> Engine:
    """A LlavaForConditionalGeneration with LLaVA-1.5's image geometry and chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER", "ASSISTANT", ":", "\n"]
    words += sorted(set(PAPER_PROMPT.replace("?", " ? ").replace(".", " . ").split()) | {"dog"})
    vocab = {w: i for i, w in enumerate(words)}
    for i in range(len(vocab), shape["vocab"]):
        vocab[f"tok{i}"] = i
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                             bos_token="<s>", eos_token="</s>",
                                             extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=shape["vision_hidden"], intermediate_size=4 * shape["vision_hidden"],
                              num_hidden_layers=shape["vision_layers"], num_attention_heads=shape["vision_heads"],
                              image_size=336, patch_size=14)
    text = LlamaConfig(hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
                       num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                       num_key_value_heads=shape["kv_heads"], vocab_size=shape["vocab"],
                       max_position_embeddings=4096)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 336},
                                                                  crop_size={"height": 336, "width": 336}),
                               tokenizer=fast_tokenizer, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    return Engine(model.eval(), processor, name=f"llava-1.5-shape-{shape['layers']}x{shape['heads']}")


def fast_flops_per_mask(engine: Engine, sample) -> float:
    """Multiply-adds ×2 of one fast-path mask: text tokens through every layer, prefix attention
    over own and mean image keys, and the unembedding of the last position."""
    cfg = engine.model.config.text_config
    d, ff, T = cfg.hidden_size, cfg.intermediate_size, sample.n_text
    kv = engine.n_kv_heads * engine.head_dim
    H, D, P0, P = engine.n_heads, engine.head_dim, sample.text_start, sample.n_image
    linear = 2 * T * (2 * d * d + 2 * d * kv + 3 * d * ff)
    attention = 2 * 2 * T * H * D * (P0 + P + T) + 2 * T * H * D * P   # scores + mean scores, values + shift
    return engine.n_layers * (linear + attention) + 2 * d * cfg.vocab_size


def matmul_peak(device: str, dtype: torch.dtype, n: int | None = None, repeats: int = 10) -> float:
    """Measured dense matmul rate (FLOP/s): 2048² on a CPU, 8192² on a GPU (smaller ones underfill it)."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def show(result: dict, json_path: Path | None) -> dict:
    """Print the results as an aligned table and, with ``json_path``, write them as JSON."""
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="LLaVA-1.5-7B shape on a GPU, 10,000 masks")
    parser.add_argument("--masks", type=int, default=None, help="masks for the fast path")
    parser.add_argument("--literal-masks", type=int, default=None, help="masks for the literal path")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    full = args.full_size
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if full and not device.startswith("cuda"):
        parser.error("--full-size needs a GPU (the 7B shape does not fit a CPU benchmark)")
    dtype = torch.bfloat16 if full else torch.float32
    shape = FULL_SHAPE if full else CPU_SHAPE
    n_fast = args.masks or (10_000 if full else 512)
    n_literal = args.literal_masks or (32 if full else 8)
    batch = args.batch_size or (256 if full else 64)
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as folder:
        engine = build_llava15_shape(shape, Path(folder), device, dtype)
    from PIL import Image
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((336, 336, 3)) * 255).astype("uint8")) for _ in range(3)]
    means = compute_means(engine, images[1:], progress=False)
    sample = engine.prepare(images[0], answer="dog")
    _, record_seconds = timed(lambda: engine.record(sample), device)
    masks = sample_head_masks(engine.n_total_heads, max(n_fast, n_literal), 0.75, np.random.default_rng(0))

    engine.logits(sample, means, masks[:2], method="literal")                    # warm-up
    engine.logits(sample, means, masks[:batch], method="fast", batch_size=batch)
    literal, literal_seconds = timed(lambda: engine.logits(sample, means, masks[:n_literal], method="literal"), device)
    fast, fast_seconds = timed(lambda: engine.logits(sample, means, masks[:n_fast], method="fast",
                                                     batch_size=batch, progress=True), device)
    agree = float(np.abs(fast[:n_literal] - literal).max())
    peak = matmul_peak(device, dtype)
    fast_rate, literal_rate = n_fast / fast_seconds, n_literal / literal_seconds
    flops = fast_flops_per_mask(engine, sample)
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "model": engine.name, "layers": engine.n_layers, "heads": engine.n_heads,
        "hidden": engine.model.config.text_config.hidden_size,
        "image_tokens": sample.n_image, "text_tokens": sample.n_text, "prefix_tokens": int(sample.image_positions[0]),
        "literal_masks": n_literal, "literal_masks_per_s": literal_rate,
        "fast_masks": n_fast, "fast_batch": batch, "fast_masks_per_s": fast_rate,
        "speedup_fast_over_literal": fast_rate / literal_rate,
        "max_abs_diff_fast_vs_literal": agree,
        "record_seconds": record_seconds,
        "seconds_per_sample_10k_masks_fast": record_seconds + 10_000 / fast_rate,
        "seconds_per_sample_10k_masks_literal": 10_000 / literal_rate,
        "matmul_peak_tflops": peak / 1e12,
        "fast_achieved_tflops": flops * fast_rate / 1e12,
        "fast_share_of_matmul_peak": flops * fast_rate / peak,
    }
    if full:
        result["paper_seconds_per_sample"] = PAPER_SECONDS_PER_SAMPLE
        result["speedup_over_paper"] = PAPER_SECONDS_PER_SAMPLE / result["seconds_per_sample_10k_masks_fast"]
    return show(result, args.json)


if __name__ == "__main__":
    main()
