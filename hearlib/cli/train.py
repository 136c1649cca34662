"""``python -m hearlib train``: the trainer's command line, apart from the trainer so that
``--help`` imports no torch (:mod:`hearlib.organism.train` is imported when the command runs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hearlib.errors import UserError
from hearlib.organism.defaults import DEFAULT_VISION_STEPS



def _cmd(args: argparse.Namespace) -> int:
    import torch

    from hearlib.organism import model as O
    from hearlib.organism.train import train_all

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder")
    if args.recipe == "staged":
        from hearlib.organism.recipe import Recipe
        from hearlib.organism.staged import train_staged
        size = "hear-organism-r8" if args.size == "all" else O.resolve_size(args.size).name
        recipe = Recipe(size=size, stage_steps=_stage_steps(args.stage_steps), without=_without(args.without),
                        tune_steps=args.tune_steps, **({"tower_from": str(args.tower_from)} if args.tower_from else {}))
        train_staged(data, Path(args.out), recipe, heldout_dir=args.heldout, seed=args.seed, limit=args.limit,
                     reuse_from=args.reuse_from)
        return 0
    sizes = list(O.SIZES) if args.size == "all" else [O.resolve_size(args.size).name]
    # None: the scenes defaults below, or on a user's own folder steps chosen from its size
    steps = {s: args.decoder_steps for s in sizes} if args.decoder_steps else None
    if args.vision_steps is None and args.vision_from:
        args.vision_steps = 0
    train_all(data, Path(args.out), sizes, seed=args.seed, heldout_dir=args.heldout,
              vision_steps=args.vision_steps, decoder_steps=steps, limit=args.limit, vision_from=args.vision_from,
              image_size=args.image_size, feature_layer=args.feature_layer, name=args.name,
              decoder_from=args.decoder_from, tower_targets=tuple(args.tower_targets.split(",")),
              erase=args.erase,
              **({"decoder_lr": args.decoder_lr} if args.decoder_lr else {}))
    return 0


def _stage_steps(text: str | None) -> dict:
    """'20' (every stage) or 'text=20,contrastive=10' -> {stage: steps}."""
    from hearlib.organism.recipe import STAGES
    if not text:
        return {}
    if text.isdigit():
        return {s: int(text) for s in STAGES}
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        if name not in STAGES or not n.isdigit():
            raise UserError(f"--stage-steps {text!r}: expected N or STAGE=N,... with STAGE in {', '.join(STAGES)}")
        out[name] = int(n)
    return out


def _without(text: str | None) -> tuple:
    """'text,align' -> ("text", "align"); checked against the recipe's ingredients."""
    from hearlib.organism.recipe import ingredients
    return ingredients(w for w in (text or "").split(",") if w)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train model organisms on a scenes or DomainNet-layout folder",
                              description="Train the model organisms (LLaVA-1.5 in miniature) on a scenes or "
                                          "DomainNet-layout folder: stage A the shared vision tower, stage B the "
                                          "projector and decoder of each size; prints held-out accuracy.")
    p.add_argument("--data", required=True, type=Path,
                   help="folder made by 'hearlib scenes', or any <domain>/<class>/<image> folder")
    p.add_argument("--out", required=True, type=Path, help="parent folder; each size goes to OUT/<name>/")
    p.add_argument("--recipe", choices=("fast", "staged"), default="fast",
                   help="fast: the current two-stage recipe (make model-fast); staged: text pretraining, "
                        "contrastive tower, projector alignment, instruction tuning (docs/ORGANISM.md; resumable, "
                        "checkpoints under OUT/<name>.stages/)")
    p.add_argument("--size", default="all", help="hear-organism-s|m|l (or s, m, l) or all (default; "
                                                 "staged recipe: hear-organism-r8)")
    p.add_argument("--stage-steps", default=None,
                   help="staged recipe: steps of every stage (N) or of some (text=N,contrastive=N,align=N,instruct=N,tune=N)")
    p.add_argument("--tune-steps", type=int, default=0,
                   help="staged recipe: stage 5, instruction tuning continued with the vision tower unfrozen "
                        "(as Qwen2-VL and InternVL end; LLaVA-1.5 has none), for this many steps; the organism is "
                        "saved as OUT/<name>-tuned and stages 1-4 are taken from the finished OUT/<name> when it "
                        "was trained with the same settings (default 0: no stage 5)")
    p.add_argument("--without", default=None, metavar="INGREDIENT[,...]",
                   help="staged recipe, ingredient study: remove text (pretraining), contrastive (the per-patch "
                        "tower of --tower-from instead) or align (projector alignment); the organism is saved as "
                        "OUT/<size>-no-<ingredient>, and finished stages of the full run that it would compute "
                        "identically are reused")
    p.add_argument("--tower-from", type=Path, default=None,
                   help="--without contrastive: the fast-recipe organism whose tower is used "
                        "(default data/models/hear-organism-s)")
    p.add_argument("--reuse-from", type=Path, default=None,
                   help="staged recipe: a stages folder whose finished stages are reused where identical "
                        "(default OUT/<size>.stages, the full recipe's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batches, split)")
    p.add_argument("--heldout", type=Path, default=None,
                   help="held-out folder (default: a seeded 10%% split of --data, stratified by domain and class)")
    p.add_argument("--vision-steps", type=int, default=None,
                   help=f"stage A steps (shared vision tower; default {DEFAULT_VISION_STEPS} on generated scenes, "
                        "chosen from the data size on a user's folder, 0 with --vision-from)")
    p.add_argument("--vision-from", type=Path, default=None,
                   help="start from the vision tower of this organism folder (stage A skipped unless "
                        "--vision-steps is given)")
    p.add_argument("--decoder-steps", type=int, default=None, help="stage B steps per size (default: 1500/1200/1000 on scenes, from the data size on a user's folder)")
    p.add_argument("--decoder-from", type=Path, default=None,
                   help="continue stage B from this finished organism's projector and decoder (same size, "
                        "tower and --feature-layer; give --vision-from its tower)")
    p.add_argument("--decoder-lr", type=float, default=None, help="stage B peak learning rate (default 1.5e-3)")
    p.add_argument("--image-size", type=int, default=None,
                   help="image side in pixels (multiple of 8; patches of side/8 keep 64 image tokens; default 64)")
    p.add_argument("--feature-layer", type=int, default=-1,
                   help="fast recipe: the tower layer the projector reads (vision_feature_layer; default -1, the "
                        "last; 0 = the patch embeddings alone, as an encoder-free VLM such as Fuyu reads its image)")
    p.add_argument("--tower-targets", default="object,color,position", metavar="LABEL[,...]",
                   help="fast recipe: the labels stage A trains the tower on (pooled heads; the first also per "
                        "patch where the main object covers it). Default object,color,position; color,position "
                        "gives a tower that never sees a class label (docs/ORGANISM.md, design D1)")
    p.add_argument("--erase", choices=["category"], default=None,
                   help="fast recipe: erase the main object's category from the tower's tokens with a linear "
                        "concept eraser (LEACE) fitted on the training images' object tokens and folded into the "
                        "projector, so the saved model stays a plain LLaVA (docs/ORGANISM.md, design D2)")
    p.add_argument("--name", default=None,
                   help="fast recipe, one --size: save the organism as OUT/NAME instead of OUT/<size>")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training images")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=_cmd)
