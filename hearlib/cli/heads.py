"""``hearlib heads``: a model's image-to-text heads from a store (:mod:`hearlib.records.heads`), in
hearlib's, SparseMM's or a per-layer format; ``hearlib heads diff A.json B.json`` compares two."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hearlib.errors import UserError
from hearlib.records.heads import DEFAULT_SELECT, SPARSEMM_SCORES, X_STAR_SHARE   # light: numpy is imported inside

DESCRIPTION = (
    "Write a model's image-to-text heads from the records 'hearlib run' stored: mean θ (HeAr "
    "attribution) and its spread per (layer, head) over the samples, how often each head is in the "
    "validated set x*, Fig. 10's sample-agnostic and sample-specific heads, and the top-k heads per "
    "layer, with the settings and sample counts; JSON (--out) and the per-head table as CSV. "
    "The format is docs/HEADS_FORMAT.md. Where the store holds several attribution settings for the "
    "model (other ratios, datasets, prompts), the main study's is used (validated with every "
    "criterion, then the most samples) unless --dataset, --prompt or --settings choose. --format sparsemm "
    "writes SparseMM's per-head score file ({\"L-H\": [scores]}: θ per sample clipped at 0, or with "
    "--sparsemm-scores mean the mean θ clipped after averaging; refused where SparseMM could not load it), "
    "--format per-layer [layer][head] arrays; "
    "every format carries the set's stability (bootstrap intervals of θ, x* overlap between halves of the "
    "samples, datasets and styles, and against the sample count). "
    "'hearlib heads diff A.json B.json [--out FIG.png]' compares two heads JSON files: heads gained and lost, "
    "rank correlation of θ, one figure.")


def register(subparsers) -> None:
    parser = subparsers.add_parser("heads", help="a model's image-to-text heads from a store, as JSON and CSV",
                                   description=DESCRIPTION)
    parser.add_argument("diff", nargs="*", metavar="diff A.json B.json",
                        help="compare two 'hearlib heads' JSON files instead (with --out FIG.png: the figure)")
    parser.add_argument("--store", type=Path, help="store folder written by 'hearlib run'")
    parser.add_argument("--model",
                        help="the model: its id, folder or name as given to 'hearlib run' (a unique part of it)")
    parser.add_argument("--out", type=Path,
                        help="the file to write (diff: the figure, e.g. diff.png)")
    parser.add_argument("--format", choices=("hearlib", "sparsemm", "per-layer"), default="hearlib",
                        help="hearlib: the heads JSON (docs/HEADS_FORMAT.md, default); sparsemm: SparseMM's score "
                             "file, with the heads JSON beside it (OUT.hearlib.json); per-layer: [layer][head] arrays")
    parser.add_argument("--sparsemm-scores", choices=SPARSEMM_SCORES, default=None,
                        help="with --format sparsemm: per-sample (default) writes θ of every attribution sample, "
                             "each clipped at 0, and SparseMM averages them (its ranking is by mean max(θ, 0)); "
                             "mean writes one score per head, mean θ clipped at 0 after averaging, so SparseMM "
                             "ranks the heads of positive mean θ as hearlib's top-k by mean θ. A file whose "
                             "scores are all 0 (SparseMM would divide by zero) is refused")
    parser.add_argument("--csv", type=Path, default=None,
                        help="the CSV file to write (default: --out with the suffix .csv)")
    parser.add_argument("--select", default=DEFAULT_SELECT,
                        help=f"diff: the set compared: top-k:K (the K heads of largest mean θ; default "
                             f"{DEFAULT_SELECT}, never empty), x-star[:SHARE] (heads in x* in at least SHARE of "
                             f"the samples, default {X_STAR_SHARE}; a warning names the share where it chooses "
                             "no head) or agnostic")
    parser.add_argument("--json", type=Path, default=None, help="diff: also write the comparison as JSON")
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
    from hearlib.io import save_text
    from hearlib.records.heads import export, head_data, to_csv

    if args.diff:
        return run_diff(args)
    missing = [flag for flag, value in (("--store", args.store), ("--model", args.model), ("--out", args.out))
               if value is None]
    if missing:
        raise UserError(f"{', '.join(missing)} required (or 'hearlib heads diff A.json B.json')")
    if args.sparsemm_scores is not None and args.format != "sparsemm":
        raise UserError(f"--sparsemm-scores applies to --format sparsemm, not {args.format}")
    sparsemm = args.sparsemm_scores or "per-sample"
    data = head_data(args.store, args.model, dataset=args.dataset, prompt=args.prompt, settings=args.settings,
                     top_k=args.top_k, threshold=args.threshold, share=args.share)
    document = data.document
    csv_path = args.csv or args.out.with_suffix(".csv")
    written = [args.out]
    save_text(args.out, export(data, args.format, sparsemm=sparsemm))     # refused before anything is written
    if args.format == "sparsemm":                       # the score file has room for nothing else
        beside = args.out.with_suffix(".hearlib.json")
        save_text(beside, export(data, "hearlib"))
        written.append(beside)
    save_text(csv_path, to_csv(document))
    written.append(csv_path)
    n = document["n_samples"]
    halves = document["stability"]["halves"]
    print(f"wrote {', '.join(map(str, written))}: {document['n_layers']}×{document['n_heads']} heads of "
          f"{document['model_id']}, {n['attribution']} attribution / {n['validation']} validation samples, "
          f"{len(document['split']['sample_agnostic'])} sample-agnostic and "
          f"{len(document['split']['sample_specific'])} sample-specific heads"
          + (f"; x* Jaccard between halves {halves['mean']:.2f}" if halves else "")
          + ("" if args.format != "sparsemm" else
             "; SparseMM scores: " + ("θ per sample, clipped at 0" if sparsemm == "per-sample"
                                      else "mean θ, clipped at 0 after averaging")))
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from hearlib.io import save_json
    from hearlib.paper.plotting import diff_figure
    from hearlib.records.heads import diff_heads, empty_selection_warning, read_heads

    if len(args.diff) != 3 or args.diff[0] != "diff":
        raise UserError("usage: hearlib heads diff A.json B.json [--out FIG.png] [--select S] [--json DIFF.json]")
    a, b = read_heads(args.diff[1]), read_heads(args.diff[2])
    result = diff_heads(a, b, args.select)
    for document, name in ((a, args.diff[1]), (b, args.diff[2])):
        warning = empty_selection_warning(document, args.select, name)
        if warning is not None:
            print(warning, file=sys.stderr)
    if args.json is not None:
        save_json(args.json, result)
    if args.out is not None:
        from hearlib.io import save_bytes

        figure = diff_figure(a, b, result)
        save_bytes(args.out, lambda stream: figure.savefig(stream, format=args.out.suffix.lstrip(".") or "png",
                                                           dpi=120))
    spearman = result["spearman_theta"]
    print(f"{result['a']['model_id']} -> {result['b']['model_id']} ({args.select}): "
          f"{len(result['gained'])} gained {result['gained']}, {len(result['lost'])} lost {result['lost']}, "
          f"{len(result['kept'])} kept; Jaccard {result['jaccard']:.3f}; Spearman of θ "
          + ("undefined" if spearman is None else f"{spearman:.3f}"))
    return 0
