"""How many masks are enough: fixed M = 10,000 against the adaptive stop rule, in one run.

For K correctly answered samples, ``hearlib run --stages attribution`` runs twice into two fresh stores:

* fixed: M = 10,000 masks per sample (the paper's setting);
* adaptive: masks drawn in chunks of ``--chunk`` and stopped once held-out R² has moved by less
  than ``--tol`` over ``--patience`` chunks (``python -m hearlib run --adaptive``).

Both runs draw masks from the same per-sample stream, so the adaptive masks are a prefix of the
fixed ones. Printed per sample and in total: masks used, seconds, held-out R² of both fits, and
the agreement of the two attributions θ (Pearson and top-10 overlap of the heads). Also printed:
R²(M) from the fixed run's curve, which says where the curve flattens.

    python benchmarks/bench_mask_count.py --model data/models/hear-organism-l --data data/scenes/heldout
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "data/models/hear-organism-l"))
    p.add_argument("--data", default=str(ROOT / "data/scenes/heldout"))
    p.add_argument("--n-samples", type=int, default=8)
    p.add_argument("--n-masks", type=int, default=10_000)
    p.add_argument("--chunk", type=int, default=500)
    p.add_argument("--tol", type=float, default=0.01)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--n-mean-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()

    import torch

    from hearlib.paper.collect import run_plan
    from hearlib.paper.plan import profile_params
    from hearlib.records.store import Store

    torch.set_num_threads(max(1, torch.get_num_threads()))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, adaptive in (("fixed", False), ("adaptive", True)):
            out = Path(tmp) / name
            params = profile_params(None, model=args.model, data=args.data, n_samples=args.n_samples,
                                    n_tsne_samples=0, n_masks=args.n_masks, n_mean_images=args.n_mean_images,
                                    batch_size=args.batch_size,
                                    adaptive=dict(adaptive=True, adaptive_chunk=args.chunk, adaptive_tol=args.tol,
                                                  adaptive_patience=args.patience) if adaptive else None)
            start = time.perf_counter()
            counts = run_plan(params, ("attribution",), out, progress=False)
            wall = time.perf_counter() - start
            store = Store(out)
            records = {r.meta["sample"]: r for r in (store.get(k) for k in store.keys() if "/attribution-" in k)}
            runs[name] = (records, wall, counts)

    fixed, adaptive = runs["fixed"][0], runs["adaptive"][0]
    common = sorted(set(fixed) & set(adaptive), key=str)
    print(f"model {args.model}; {len(common)} samples; fixed M = {args.n_masks}; adaptive chunk {args.chunk}, "
          f"tol {args.tol}, patience {args.patience}")
    print("| sample | label | M used | R² adaptive | R² fixed | θ Pearson | top-10 overlap | s adaptive | s fixed |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    used, agree, overlap, secs_a, secs_f, r2a, r2f = [], [], [], [], [], [], []
    for s in common:
        a, f = adaptive[s], fixed[s]
        ca, cf = a.arrays["theta"], f.arrays["theta"]
        rho = float(np.corrcoef(ca, cf)[0, 1]) if ca.std() > 0 and cf.std() > 0 else float("nan")
        top = len(set(np.argsort(-ca)[:10]) & set(np.argsort(-cf)[:10])) / 10
        used.append(a.meta["n_masks"]), agree.append(rho), overlap.append(top)
        secs_a.append(a.meta["run"]["seconds"]), secs_f.append(f.meta["run"]["seconds"])
        r2a.append(a.meta["r2"]), r2f.append(f.meta["r2"])
        print(f"| {s} | {a.meta['label']} | {a.meta['n_masks']} | {a.meta['r2']:.3f} | {f.meta['r2']:.3f} | "
              f"{rho:.3f} | {top:.1f} | {secs_a[-1]:.1f} | {secs_f[-1]:.1f} |")
    curve = np.mean([fixed[s].arrays["r2_curve"] for s in common], axis=0)
    counts = fixed[common[0]].arrays["r2_counts"]
    print("\nmean held-out R² of the fixed run's fit on its first m masks:")
    print("  " + ", ".join(f"m={int(m)}: {r:.3f}" for m, r in zip(counts, curve)))
    print(f"\nmasks per sample: adaptive {np.mean(used):.0f} (min {min(used)}, max {max(used)}) vs fixed "
          f"{args.n_masks}: {args.n_masks / np.mean(used):.1f}× fewer")
    print(f"seconds per sample: adaptive {np.mean(secs_a):.1f} vs fixed {np.mean(secs_f):.1f} "
          f"({np.mean(secs_f) / np.mean(secs_a):.1f}× faster)")
    print(f"held-out R²: adaptive {np.mean(r2a):.3f} vs fixed {np.mean(r2f):.3f}; θ agreement: Pearson "
          f"{np.nanmean(agree):.3f} (min {np.nanmin(agree):.3f}), top-10 heads overlap {np.mean(overlap):.2f}")


if __name__ == "__main__":
    main()
