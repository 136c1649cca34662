"""``hearlib means``: mean image keys/values of R reference images (:func:`hearlib.method.means.compute_means`).

Nothing heavy is imported until the command runs, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hearlib.errors import UserError
from hearlib.prompts import PAPER_PROMPT

MEANS_DESCRIPTION = (
    "Average the image keys and values of R reference images, per layer, key/value head and image "
    "position, under the prompt. Mean ablation replaces an ablated head's image keys/values with "
    "these. The file records the model, input resolution and prompt; 'attribute' and 'run' refuse "
    "a means file made for another model or prompt.")


def register(subparsers) -> None:
    means = subparsers.add_parser("means", help="mean image keys/values from R reference images",
                                  description=MEANS_DESCRIPTION)
    means.add_argument("--model", required=True, help="model folder, hub id or registry name")
    means.add_argument("--images", required=True, type=Path, help="folder of reference images (searched recursively)")
    means.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    means.add_argument("--prompt", default=None, help=f"task prompt (default: the paper's, {PAPER_PROMPT!r})")
    means.add_argument("--n-images", type=int, default=100,
                       help="R, the number of reference images, first in sorted order (default 100)")
    means.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    means.add_argument("--allow-partial-load", action="store_true",
                       help="use a checkpoint whose weights do not all load (refused without it)")
    means.set_defaults(func=run_means)


def run_means(args: argparse.Namespace) -> int:
    from hearlib.io import image_files
    from hearlib.method.means import compute_means
    from hearlib.method.loading import load_engine

    if args.n_images < 1:
        raise UserError("--n-images must be at least 1")
    if not args.images.is_dir():
        raise UserError(f"image folder not found: {args.images}")
    files = image_files(args.images)[: args.n_images]
    if not files:
        raise UserError(f"no images in {args.images}")
    engine = load_engine(args.model, device=args.device, allow_partial_load=args.allow_partial_load)
    means = compute_means(engine, files, prompt=args.prompt)
    means.save(args.out)
    print(f"wrote {args.out}: mean keys/values of {len(files)} images, {means.k.shape[2]} image tokens")
    return 0
