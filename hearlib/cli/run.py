"""``hearlib run``: the command line of :func:`hearlib.paper.collect.run_plan` (what the run does, how it
shares and resumes work, is described there)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hearlib import paths
from hearlib.cli import batch_size_type
from hearlib.errors import UserError
from hearlib.paper.collect import run_plan


def register(subparsers) -> None:
    from hearlib.paper.catalogue import GROUPS

    p = subparsers.add_parser(
        "run", help="collect per-sample HeAr records into a store (shard with accelerate launch)",
        description="Collect every record the notebooks read (or the stages named by --stages) into a "
                    "store: screening, head attribution, validation, text and image tokens, the logit "
                    "lens, Table 1's prompts and Fig. 9's domains. Resumable. Share the work with "
                    "'accelerate launch --num_processes N -m hearlib run ...', or start several "
                    "independent runs on one store: each sample is claimed before it is computed.")
    p.add_argument("--profile", default=None,
                   help=f"sizes: {', '.join(paths.profile_names())} (notebooks/profiles/) or a YAML file "
                        "(default: the paper's values)")
    p.add_argument("--stages", default="all",
                   help=f"comma-separated groups to collect, or 'all' (default): {','.join(GROUPS)}")
    p.add_argument("--model", default=None, help="the main model: folder, hub id or registry name "
                   "(default: the profile's)")
    p.add_argument("--models", nargs="+", default=None,
                   help="models compared in Figs. 11-15 and 17 and Table 2 (default: the profile's, or --model)")
    p.add_argument("--data", required=True, type=Path,
                   help="COCO-format folder or instances file, or DomainNet-layout folder")
    p.add_argument("--domain-data", type=Path, default=None,
                   help="DomainNet-layout folder for the domains group (default: --data)")
    p.add_argument("--domains", nargs="+", default=None, help="DomainNet domains to use (default: real sketch clipart)")
    p.add_argument("--out", required=True, type=Path, help="store folder")
    p.add_argument("--kind", choices=("coco", "domainnet"), default=None, help="format of --data (default: guessed)")
    p.add_argument("--split", default=None, help="COCO split, e.g. val2017 (default: the one found)")
    p.add_argument("--n-samples", type=int, default=None, help="K, samples per model (paper: 200)")
    p.add_argument("--n-masks", type=int, default=None, help="M, head masks per sample (paper: 10,000)")
    p.add_argument("--seed", type=int, default=None, help="study seed; masks use a per-sample seed derived from it")
    p.add_argument("--ablation-ratio", type=float, default=None, help="p, share of heads ablated per mask (paper: 0.75)")
    p.add_argument("--means", type=Path, default=None,
                   help="mean keys/values file from 'hearlib means' (default: computed under the store)")
    p.add_argument("--n-mean-images", type=int, default=None, help="R, reference images for the means (paper: 100)")
    p.add_argument("--batch-size", type=batch_size_type, default=None,
                   help="masks per forward, or 'auto' (timed on the first sample; halved on out-of-memory)")
    p.add_argument("--method", choices=("fast", "literal"), default=None,
                   help="fast (text tokens rerun, shared prefix) or literal (one full forward per mask, the reference)")
    p.add_argument("--include-wrong", action="store_true",
                   help="also study samples the model answers wrongly (default: skip them, as the paper)")
    p.add_argument("--adaptive", action="store_true", help="stop drawing head masks once held-out R² is stable")
    p.add_argument("--adaptive-chunk", type=int, default=500, help="masks per chunk with --adaptive (default 500)")
    p.add_argument("--adaptive-tol", type=float, default=0.01, help="R² change counted as stable (default 0.01)")
    p.add_argument("--adaptive-patience", type=int, default=2, help="stable chunks needed to stop (default 2)")
    p.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                   help="do not retry stages that failed in an earlier run")
    p.add_argument("--claim-timeout", type=float, default=None,
                   help="seconds without a heartbeat after which another process's claim is taken over (default 120)")
    p.add_argument("--device", default=None, help="device (default: the one accelerate gives this process)")
    p.add_argument("--allow-partial-load", action="store_true",
                   help="study a checkpoint whose weights do not all load (missing or of another shape, left at "
                        "random initialisation); refused without it. Every record made says so (environment.load)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from hearlib.paper.catalogue import GROUPS
    from hearlib.paper.plan import fill_command, profile_params

    groups = GROUPS if args.stages.strip() == "all" else tuple(s.strip() for s in args.stages.split(",") if s.strip())
    for name, value in (("--n-samples", args.n_samples), ("--n-masks", args.n_masks),
                        ("--n-mean-images", args.n_mean_images), ("--batch-size", args.batch_size)):
        if value is not None and value < (10 if name == "--n-masks" else 1):
            raise UserError(f"{name} must be at least {10 if name == '--n-masks' else 1}"
                            + (" (the fit holds out 20% of the masks)" if name == "--n-masks" else ""))
    if args.ablation_ratio is not None and not 0.0 < args.ablation_ratio < 1.0:
        raise UserError("--ablation-ratio must lie strictly between 0 and 1")
    if args.seed is not None and args.seed < 0:
        raise UserError("--seed must be a non-negative integer")
    if not args.data.exists():
        raise UserError(f"dataset not found: {args.data}")
    if args.means is not None and not args.means.is_file():
        raise UserError(f"means file not found: {args.means}")
    n = args.n_samples
    params = profile_params(args.profile, model=args.model, models=args.models or ([args.model] if args.model else None),
                            data=str(args.data), domain_data=str(args.domain_data) if args.domain_data else None,
                            domains=args.domains, n_masks=args.n_masks, seed=args.seed, ratio=args.ablation_ratio,
                            n_mean_images=args.n_mean_images, batch_size=args.batch_size, method=args.method,
                            **({"n_samples": n, "n_size_samples": n, "n_tsne_samples": n, "n_size_tsne_samples": n,
                                "n_image_samples": n, "n_ratio_samples": n, "n_prompt_samples": n,
                                "n_domain_samples": n, "n_lens_samples": n, "n_question_samples": n} if n is not None else {}))
    if args.include_wrong:
        params["correct_only"] = False
    if args.adaptive:
        params["adaptive"] = dict(adaptive=True, adaptive_chunk=args.adaptive_chunk, adaptive_tol=args.adaptive_tol,
                                  adaptive_patience=args.adaptive_patience)
    try:
        run_plan(params, groups, args.out, means_file=args.means, device=args.device, progress=args.progress,
                 retry_failed=args.retry_failed, claims_timeout=args.claim_timeout, delay=args.delay,
                 split=args.split, kind=args.kind,
                 fill_command=fill_command(params, args.profile, args.out, list(groups)),
                 allow_partial_load=args.allow_partial_load)
    finally:
        _close_distributed()
    return 0


def _close_distributed() -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:   # noqa: BLE001 - shutting down
        pass
