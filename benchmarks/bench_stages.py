"""Seconds per sample for each stage of the paper profile, timed in one run.

Builds the same LLaVA-1.5-shaped model as ``bench_ablation.py`` (random weights; ``--full-size``:
the LLaVA-1.5-7B shape in bf16 on a GPU) and runs one sample through every per-sample stage with
the paper's settings, using the library functions the stages call:

``screen``       the unablated forward with attention statistics (``engine.record``)
``attribution``  M head masks → π (fast path), the ElasticNet fit, the R²(M) curve (8 more fits)
``validation``   single-head Δ (N masks) and faithfulness/completeness for 4 criteria (8·N masks)
``text``         P_txt + 2 text-token masks under x*
``image``        M_img image-token masks under (x*, u*) and the ElasticNet over P_img tokens
``prompts``      Table 1: the attribution stage again for each of the nine other prompts; timed
                 as nine times the measured attribution stage (same M, prompts of similar length),
                 reported as such

The means (R reference images) are a per-study cost, not per sample, and are timed apart.

    python benchmarks/bench_stages.py [--full-size] [--masks 10000] [--image-masks 10000] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ablation import (CPU_SHAPE, FULL_SHAPE, PAPER_SECONDS_PER_SAMPLE, build_llava15_shape,  # noqa: E402
                            show, timed)
from hearlib.method.effects import (CRITERIA, criterion_orders, engine_evaluator, image_tokens,  # noqa: E402
                              single_head_delta, text_tokens, top_k_mask, validation_curves)
from hearlib.method.attribution import fit_attribution, r2_by_mask_count  # noqa: E402
from hearlib.records.stages import curve_counts  # noqa: E402
from hearlib.method.masks import sample_head_masks  # noqa: E402
from hearlib.method.means import compute_means  # noqa: E402

N_OTHER_PROMPTS = 9   # Table 1: the paper prompt and nine alternatives (§C.3)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="LLaVA-1.5-7B shape, bf16, on a GPU")
    parser.add_argument("--masks", type=int, default=None, help="head masks M (paper: 10,000)")
    parser.add_argument("--image-masks", type=int, default=None, help="image-token masks (paper: 10,000)")
    parser.add_argument("--mean-images", type=int, default=None, help="R reference images (paper: 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="masks per forward")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    full = args.full_size
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if full and not device.startswith("cuda"):
        parser.error("--full-size needs a GPU")
    dtype = torch.bfloat16 if full else torch.float32
    n_masks = args.masks or (10_000 if full else 1_000)
    n_image_masks = args.image_masks or (10_000 if full else 1_000)
    n_refs = args.mean_images or (100 if full else 8)
    batch = args.batch_size or (256 if full else 64)

    engine, build_seconds = timed(lambda: build_llava15_shape(FULL_SHAPE if full else CPU_SHAPE, Path("."),
                                                              device, dtype), device)
    from PIL import Image
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((336, 336, 3)) * 255).astype("uint8")) for _ in range(n_refs + 1)]
    means, means_seconds = timed(lambda: compute_means(engine, images[1:], progress=False), device)
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    engine.record(engine.prepare(images[1], answer="dog"))   # warm-up
    sample, seconds["screen"] = timed(lambda: engine.prepare(images[0], answer="dog"), device)
    record, record_seconds = timed(lambda: engine.record(sample), device)
    seconds["screen"] += record_seconds
    counts["screen"] = 1

    N = engine.n_total_heads
    evaluate = engine_evaluator(engine, sample, means, method="fast", batch_size=batch)
    evaluate(np.ones((2, N), bool))   # warm-up, and ℓ(1), ℓ(0) for π

    masks = sample_head_masks(N, n_masks, 0.75, np.random.default_rng(0))
    pi, forward = timed(lambda: evaluate(masks), device)
    fit, fit_seconds = timed(lambda: fit_attribution(masks, pi, seed=0), "cpu")
    ladder = curve_counts(n_masks)[:-1]
    _, curve_seconds = timed(lambda: r2_by_mask_count(masks, pi, ladder, seed=0), "cpu")
    seconds["attribution"] = forward + fit_seconds + curve_seconds
    counts["attribution"] = n_masks
    detail = {"attribution_forward_s": forward, "attribution_fit_s": fit_seconds,
              "attribution_r2_curve_s": curve_seconds, "attribution_r2": fit.r2}

    def validation():
        delta = single_head_delta(evaluate, N)
        orders = criterion_orders(theta=fit.coef, attention=record.image_attention, delta=delta,
                                  rng=np.random.default_rng(1), n_heads=N)
        return {name: validation_curves(evaluate, orders[name]) for name in CRITERIA}

    curves, seconds["validation"] = timed(validation, device)
    counts["validation"] = N + 2 * N * len(CRITERIA)
    faith = curves["HeAr"].faithfulness
    k = int(np.argmax(faith > 0.8)) + 1 if (faith > 0.8).any() else N
    x_star = top_k_mask(fit.coef, k)

    text, seconds["text"] = timed(lambda: text_tokens(evaluate, x_star, sample.n_text, 0.05), device)
    counts["text"] = sample.n_text + 2

    u_star = text.u_star if text.u_star.any() else np.ones(sample.n_text, bool)
    _, seconds["image"] = timed(lambda: image_tokens(evaluate, x_star, u_star, sample.n_image, n_image_masks,
                                                     np.random.default_rng(2), ratio=0.75, seed=0), device)
    counts["image"] = n_image_masks

    seconds["prompts"] = N_OTHER_PROMPTS * seconds["attribution"]
    counts["prompts"] = N_OTHER_PROMPTS * n_masks

    total = sum(seconds.values())
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""), "model": engine.name, "heads_N": N,
        "image_tokens": sample.n_image, "text_tokens": sample.n_text, "masks_M": n_masks,
        "image_masks": n_image_masks, "batch": batch, "build_s": build_seconds,
        "means_s_per_study": means_seconds, "mean_images_R": n_refs,
        **{f"{stage}_s_per_sample": value for stage, value in seconds.items()},
        **{f"{stage}_forwards": value for stage, value in counts.items()},
        **detail,
        "prompts_note": f"{N_OTHER_PROMPTS} x attribution (derived, not run)",
        "total_s_per_sample": total,
        "paper_s_per_sample_attribution": PAPER_SECONDS_PER_SAMPLE,
    }
    return show(result, args.json)


if __name__ == "__main__":
    main()
