"""``hearlib heads``: a model's image-to-text heads from a store (:mod:`hearlib.records.heads`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hearlib.records.heads import head_table, to_csv

DESCRIPTION = (
    "Write a model's image-to-text heads from the records 'hearlib run' stored: mean θ (HeAr "
    "attribution) and its spread per (layer, head) over the samples, how often each head is in the "
    "validated set x*, Fig. 10's sample-agnostic and sample-specific heads, and the top-k heads per "
    "layer, with the settings and sample counts; JSON (--out) and the per-head table as CSV. "
    "The format is docs/HEADS_FORMAT.md. Where the store holds several attribution settings for the "
    "model (other ratios, datasets, prompts), the main study's is used (validated with every "
    "criterion, then the most samples) unless --dataset, --prompt or --settings choose.")


def register(subparsers) -> None:
    parser = subparsers.add_parser("heads", help="a model's image-to-text heads from a store, as JSON and CSV",
                                   description=DESCRIPTION)
    parser.add_argument("--store", required=True, type=Path, help="store folder written by 'hearlib run'")
    parser.add_argument("--model", required=True,
                        help="the model: its id, folder or name as given to 'hearlib run' (a unique part of it)")
    parser.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    parser.add_argument("--csv", type=Path, default=None,
                        help="the CSV file to write (default: --out with the suffix .csv)")
    parser.add_argument("--dataset", default=None, help="only records of this dataset (its id or a unique part)")
    parser.add_argument("--prompt", default=None, help="only records made with this prompt (default: any)")
    parser.add_argument("--settings", default=None,
                        help="only the attribution records of this settings hash (the 16 hex digits after "
                             "'attribution-' in the store's keys)")
    parser.add_argument("--top-k", type=int, default=5, help="heads listed per layer, by mean θ (default 5)")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="Fig. 10: a head counts in a sample where θ_n > this (default 0.1)")
    parser.add_argument("--share", type=float, default=0.5,
                        help="Fig. 10: sample-agnostic where above the threshold in at least this share of "
                             "the samples (default 0.5)")
    parser.set_defaults(func=run_heads)


def run_heads(args: argparse.Namespace) -> int:
    from hearlib.io import save_json, save_text

    document = head_table(args.store, args.model, dataset=args.dataset, prompt=args.prompt, settings=args.settings,
                          top_k=args.top_k, threshold=args.threshold, share=args.share)
    csv_path = args.csv or args.out.with_suffix(".csv")
    save_json(args.out, document)
    save_text(csv_path, to_csv(document))
    n = document["n_samples"]
    print(f"wrote {args.out} and {csv_path}: {document['n_layers']}×{document['n_heads']} heads of "
          f"{document['model_id']}, {n['attribution']} attribution / {n['validation']} validation samples, "
          f"{len(document['split']['sample_agnostic'])} sample-agnostic and "
          f"{len(document['split']['sample_specific'])} sample-specific heads")
    return 0
