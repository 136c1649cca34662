"""``hearlib scenes``: synthetic scenes in COCO and DomainNet layout (:mod:`hearlib.organism.scenes`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hearlib.organism import scenes


def _cmd(args: argparse.Namespace) -> int:
    out = scenes.generate(args.out, args.n, args.seed, workers=args.workers, layout=args.layout)
    held = "training" if args.seed == scenes.TRAIN_SEED else "held-out"
    layout = "" if args.layout == "single" else f", layout {args.layout}"
    print(f"wrote {args.n} scenes ({held} seed {args.seed}{layout}) × {len(scenes.STYLES)} styles to {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("scenes", help="generate synthetic scenes (COCO + DomainNet layout)",
                              description=scenes.__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--n", required=True, type=int, help="number of scenes")
    p.add_argument("--seed", type=int, default=scenes.TRAIN_SEED,
                   help=f"scene seed ({scenes.TRAIN_SEED} = training; any other seed is held out)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--layout", choices=scenes.LAYOUTS, default="single",
                   help="single: one main object and small distractors (default); marked: two similar objects "
                        "and a marker beside the main one (the relation decides which object is meant)")
    p.set_defaults(func=_cmd)
