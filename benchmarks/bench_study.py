"""Seconds per stage of the quick study's collect on a fixed small subset, against a baseline.

Runs ``hearlib run``'s code (:func:`hearlib.paper.collect.run_plan`) with the quick profile on the
first ``--samples`` samples (default 2) of organism s, every stage group, into a temporary store,
and reads the run's own accounting: computing seconds per stage (each without the stages it
needed), the means, the screening, the model load. The environment (torch, transformers, numpy,
threads, BLAS, OpenMP variables) is recorded with the numbers. The result is written to
``benchmarks/results/study-<UTC time>.json`` and compared with ``benchmarks/baseline_study.json``
(ratio now / baseline per stage; a stage "moved" when the ratio leaves [0.8, 1.25] and it took
at least half a second).

``--before`` also runs the same collect in a child process configured as the code was before
the speed-ups of issue 17 (OpenMP's default spinning wait policy, one prepared sample per
reference image in the means) and prints both side by side: the ratios come from one benchmark
run, under the same load. ``--threads 1`` sets torch's thread count.

    python benchmarks/bench_study.py [--samples 2] [--n-masks 500] [--before] [--write-baseline]

Timings on a shared machine move with the load; compare ratios taken in one run.
"""
from __future__ import annotations

import os
import sys

if "--openmp-default" not in sys.argv:                     # as `python -m hearlib` (before torch)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ablation import show  # noqa: E402
from hearlib.errors import UserError  # noqa: E402

BASELINE = Path(__file__).resolve().parent / "baseline_study.json"
RESULTS = Path(__file__).resolve().parent / "results"
MOVED = (0.8, 1.25)
FLOOR_S = 0.5          # a stage under half a second in both runs never "moves" (timer noise)
SAMPLE_COUNTS = ("n_samples", "n_size_samples", "n_tsne_samples", "n_size_tsne_samples", "n_image_samples",
                 "n_ratio_samples", "n_prompt_samples", "n_domain_samples", "n_lens_samples")


def collect(args) -> dict:
    """One collect of the subset into a fresh temporary store; the run's summary."""
    import torch

    from hearlib.paper.collect import environment, run_plan
    from hearlib.paper.catalogue import GROUPS
    from hearlib.paper.plan import profile_params

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.means_batch is not None:             # the means path before batching: one image per forward
        import functools

        import hearlib.method.means
        hearlib.method.means.compute_means = functools.partial(hearlib.method.means.compute_means, batch_size=args.means_batch)
    groups = GROUPS if args.groups == "all" else tuple(g.strip() for g in args.groups.split(","))
    params = profile_params("quick", model=args.model, models=[args.model], data=str(args.data),
                            n_masks=args.n_masks, n_image_masks=args.n_masks,
                            **{name: args.samples for name in SAMPLE_COUNTS})
    with tempfile.TemporaryDirectory(prefix="bench-study-") as store:
        started = time.perf_counter()
        summary = run_plan(params, groups, store, progress=False)
        wall = time.perf_counter() - started
    model = next(iter(summary["seconds"]), None)
    seconds = summary["seconds"].get(model, {})
    return {"seconds": seconds, "records": summary["records"].get(model, {}), "wall_s": wall,
            "computed": summary["finished"], "failed": summary["failed"],
            "settings": {"model": str(args.model), "data": str(args.data), "samples": args.samples,
                         "n_masks": args.n_masks, "groups": list(groups), "profile": "quick",
                         "threads": torch.get_num_threads(), "means_batch": args.means_batch},
            "environment": environment()}


def _before(args) -> dict:
    """The same collect in a child process set up as before issue 17's speed-ups."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}   # libgomp's default: spin
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "before.json"
        command = [sys.executable, __file__, "--child", str(out), "--openmp-default", "--means-batch", "1", "--samples", str(args.samples),
                   "--n-masks", str(args.n_masks), "--model", str(args.model), "--data", str(args.data),
                   "--groups", args.groups] + (["--threads", str(args.threads)] if args.threads else [])
        subprocess.run(command, env=env, check=True, cwd=ROOT)
        return json.loads(out.read_text())


def _flat(result: dict, prefix: str = "") -> dict:
    out = {f"{prefix}{stage}_s": value for stage, value in result["seconds"].items()}
    out[f"{prefix}computing_s"] = sum(result["seconds"].values())
    out[f"{prefix}wall_s"] = result["wall_s"]
    return out


def compare(now: dict, base: dict) -> dict:
    """Ratio now / base per stage (and in total), and the stages that moved."""
    ratios, moved = {}, []
    stages = list(dict.fromkeys([*base["seconds"], *now["seconds"]]))
    for stage in stages + ["computing"]:
        a = sum(now["seconds"].values()) if stage == "computing" else now["seconds"].get(stage)
        b = sum(base["seconds"].values()) if stage == "computing" else base["seconds"].get(stage)
        if a is None or b is None or b <= 0:
            continue
        ratios[stage] = a / b
        if not MOVED[0] <= a / b <= MOVED[1] and max(a, b) >= FLOOR_S:
            moved.append(f"{stage} {a / b:.2f}x ({b:.1f} s -> {a:.1f} s)")
    return {"ratios": ratios, "moved": moved}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data/models/hear-organism-s")
    parser.add_argument("--data", type=Path, default=ROOT / "data/scenes/study-60",
                        help="scenes folder (make it with: python -m hearlib scenes --out data/scenes/study-60 "
                             "--n 60 --seed 1)")
    parser.add_argument("--samples", type=int, default=2, help="samples per request (default 2)")
    parser.add_argument("--n-masks", type=int, default=500, help="head and image-token masks per sample (default 500)")
    parser.add_argument("--groups", default="all", help="stage groups (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--before", action="store_true", help="also run the pre-issue-17 set-up, side by side")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--write-baseline", action="store_true", help="store this run as the baseline")
    parser.add_argument("--json", type=Path, default=None, help="result file (default benchmarks/results/study-*.json)")
    parser.add_argument("--means-batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--openmp-default", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for path, what in ((args.model, "model"), (args.data, "data")):
        if not path.exists():
            raise SystemExit(f"bench_study: {what} not found: {path} (see --help)")

    from hearlib.io import save_json

    try:
        now = collect(args)
    except UserError as error:
        raise SystemExit(f"bench_study: {error}") from None
    if args.child:
        save_json(args.child, now)
        return now
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "now": now}
    flat = {"transformers": now["environment"]["transformers"], "torch": now["environment"]["torch"],
            "torch_threads": now["environment"]["torch_threads"],
            "OMP_WAIT_POLICY": now["environment"]["OMP_WAIT_POLICY"], **_flat(now)}
    if args.before:
        result["before"] = before = _before(args)
        result["now_vs_before"] = compare(now, before)
        flat.update(_flat(before, "before_"))
        flat.update({f"speed-up_{stage}": 1 / r for stage, r in result["now_vs_before"]["ratios"].items() if r > 0})
    if args.baseline.is_file():
        base = json.loads(args.baseline.read_text())["now"]
        result["vs_baseline"] = compare(now, base)
        result["baseline_environment"] = base["environment"]
        flat.update({f"vs_baseline_{stage}": r for stage, r in result["vs_baseline"]["ratios"].items()})
        flat["moved"] = "; ".join(result["vs_baseline"]["moved"]) or "nothing (every stage within 0.8-1.25x)"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"study-{stamp}-tf{now['environment']['transformers']}.json"
    save_json(path, result)
    if args.write_baseline:
        save_json(args.baseline, {"measured_at": result["measured_at"], "now": now})
    show(flat, None)
    print(f"written: {path}" + (f" and the baseline {args.baseline}" if args.write_baseline else ""))
    return result


if __name__ == "__main__":
    main()
