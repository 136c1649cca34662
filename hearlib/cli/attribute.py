"""``hearlib attribute``: head attribution (HeAr) for one image.

Nothing heavy is imported until the command runs, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hearlib.cli import batch_size_type
from hearlib.errors import UserError

N_MASKS = 1000          # --n-masks default: the quick profile's n_masks (notebooks/profiles/quick.yaml)

ATTRIBUTE_DESCRIPTION = (
    "Head attribution (HeAr) for one image: draw M random head masks (each ablating a share p of "
    "all heads), compute the answer's logit under each, and fit a sparse linear model from masks "
    "to the normalised logit. Without --answer the model's own greedy answer (the first token it "
    "generates from the image) is attributed. Writes OUT/masks.npy, logits.npy, coef.npy (one weight per "
    "head, layer-major) and summary.json (answer_source: 'model' or 'given').")


def register(subparsers) -> None:
    attribute = subparsers.add_parser("attribute", help="head attribution (HeAr) for one image",
                                      description=ATTRIBUTE_DESCRIPTION)
    attribute.add_argument("--model", required=True, help="model folder, hub id or registry name")
    attribute.add_argument("--image", required=True, type=Path, help="the image file")
    attribute.add_argument("--answer", default=None,
                           help="the answer word whose logit is attributed (its first token is scored); default: "
                                "the model's own greedy answer, the token it puts first on the unablated image "
                                "(summary.json then says answer_source 'model', else 'given')")
    attribute.add_argument("--means", required=True, type=Path,
                           help="mean keys/values file from 'hearlib means' (same model and prompt)")
    attribute.add_argument("--prompt", default=None, help="task prompt (default: the paper's)")
    attribute.add_argument("--n-masks", type=int, default=N_MASKS,
                           help=f"M, masks to draw (default {N_MASKS:,}, the quick profile's, "
                                "notebooks/profiles/quick.yaml; paper: 10,000; at least 10)")
    attribute.add_argument("--ablation-ratio", type=float, default=0.75,
                           help="p, share of heads ablated per mask (default 0.75, the paper's)")
    attribute.add_argument("--seed", type=int, default=0, help="seed of the masks and of the fit (default 0)")
    attribute.add_argument("--sample-id", default=None,
                           help="the sample's id in 'hearlib run' records, which with --seed fixes the masks: a "
                                "COCO image id, or domain/class/name for DomainNet (default: the file name without "
                                "its suffix, leading zeros dropped if it is a number, as COCO names its files)")
    attribute.add_argument("--method", choices=("fast", "literal"), default="fast",
                           help="fast: rerun only the text tokens, --batch-size masks at a time (default); "
                                "literal: one full-sequence forward per mask (the slow reference)")
    attribute.add_argument("--batch-size", type=batch_size_type, default=64,
                           help="masks per forward pass with --method fast, or 'auto' (the fastest of a few "
                                "sizes, timed on the CPU); halved on out-of-memory (default 64)")
    attribute.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    attribute.add_argument("--allow-partial-load", action="store_true",
                           help="use a checkpoint whose weights do not all load (refused without it)")
    attribute.add_argument("--out", required=True, type=Path, help="output folder")
    attribute.set_defaults(func=run_attribute)


def default_sample_id(image: Path) -> str:
    """The id ``hearlib run`` gives this image in a COCO folder: its file name's number (``000000000139.jpg`` →
    ``139``), else the file name without its suffix."""
    stem = Path(image).stem
    return str(int(stem)) if stem.isdigit() else stem


def model_answer(engine, image, prompt):
    """The sample of ``image`` and ``prompt`` with the model's own greedy answer as its answer: the token
    the unablated forward puts first (:meth:`Engine.record`'s ``predicted_id``, what ``hearlib run``'s
    screening compares with the label), scored as that very token id (its decoded word need not
    tokenize back to it). The answer is set on a freshly prepared sample, before anything is cached on it."""
    predicted = engine.record(engine.prepare(image, prompt=prompt)).predicted_id
    sample = engine.prepare(image, prompt=prompt)
    sample.answer = engine.tokenizer.decode([predicted]).strip()
    sample.answer_id = predicted
    sample.answer_tokens = engine.tokenizer.convert_ids_to_tokens([predicted])
    return sample


def run_attribute(args: argparse.Namespace) -> int:
    import numpy as np

    from hearlib.method.attribution import fit_attribution
    from hearlib.io import save_json, save_npy
    from hearlib.method.means import MeanKV
    from hearlib.method.loading import load_engine
    from hearlib.records.stages import Settings, head_masks

    if args.n_masks < 10:
        raise UserError("--n-masks must be at least 10 (the fit holds out 20% of them)")
    if not 0 < args.ablation_ratio < 1:
        raise UserError("--ablation-ratio must lie strictly between 0 and 1")
    if not args.image.is_file():
        raise UserError(f"image not found: {args.image}")
    if not args.means.is_file():
        raise UserError(f"means file not found: {args.means}")
    engine = load_engine(args.model, device=args.device, allow_partial_load=args.allow_partial_load)
    if args.answer is not None:
        sample = engine.prepare(args.image, answer=args.answer, prompt=args.prompt)
        answer_source = "given"
    else:
        sample = model_answer(engine, args.image, args.prompt)
        answer_source = "model"
        print(f"answer: {sample.answer!r} (token {sample.answer_tokens[0]!r}), the model's own greedy answer "
              "(no --answer given)")
    means = MeanKV.load(args.means, engine=engine, prompt=args.prompt)
    record = engine.record(sample)
    if not record.correct:
        said = engine.tokenizer.decode([record.predicted_id]).strip()
        print(f"note: the model answers {said!r}, not {args.answer!r}; attributing the logit of "
              f"{args.answer!r} anyway", file=sys.stderr)
    sample_id = args.sample_id if args.sample_id is not None else default_sample_id(args.image)
    settings = Settings.make(n_masks=args.n_masks, ratio=args.ablation_ratio, seed=args.seed)
    masks = head_masks(engine.n_total_heads, sample_id, settings)    # the masks `hearlib run` draws
    intact, ablated = engine.reference_logits(sample, means, method=args.method)
    logits = engine.logits(sample, means, masks, method=args.method, batch_size=args.batch_size, progress=True)
    pi = (logits - ablated) / (intact - ablated)
    fit = fit_attribution(masks, pi, seed=args.seed)
    out = args.out
    save_npy(out / "masks.npy", masks.astype(bool))
    save_npy(out / "logits.npy", logits.astype(np.float64))
    save_npy(out / "coef.npy", np.asarray(fit.coef, dtype=np.float64))
    summary = {
        "model": engine.name, "image": str(args.image), "answer": sample.answer, "answer_source": answer_source,
        "answer_tokens": sample.answer_tokens, "prompt": sample.prompt,
        "n_layers": engine.n_layers, "n_heads": engine.n_heads, "n_masks": int(args.n_masks),
        "ablation_ratio": args.ablation_ratio, "seed": args.seed, "sample_id": sample_id, "method": args.method,
        "logit_intact": intact, "logit_ablated": ablated,
        "predicted_token": engine.tokenizer.convert_ids_to_tokens([record.predicted_id])[0],
        "correct": record.predicted_id == sample.answer_id,
        "r2": float(fit.r2), "pearson": float(fit.pearson), "intercept": float(fit.intercept),
        "means": str(args.means), "n_mean_images": means.n_images,
        "environment": engine.environment(args.method),
    }
    save_json(out / "summary.json", summary)
    top = np.argsort(-fit.coef)[:5]
    heads = ", ".join(f"L{n // engine.n_heads}H{n % engine.n_heads} ({fit.coef[n]:.3f})" for n in top)
    said = "the model's own answer" if answer_source == "model" else "given with --answer"
    print(f"wrote {out}: answer {sample.answer!r} ({said}), R² {fit.r2:.3f}, Pearson {fit.pearson:.3f}; "
          f"top heads {heads}")
    return 0
