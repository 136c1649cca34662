"""The fast path's two work savings, timed in one run on the committed organisms.

1. Grouped masks (``Engine.share_prefixes``): the text tokens enter the decoder with the same
   hidden states under every mask, so masks that agree on the heads of layers 0..l leave layer l
   with the same states; each layer runs once per group (few groups where a layer has few heads).
2. The last position only (``Engine.last_position_only``): the logits read the last text
   position, so the last layer computes only its query and its feed-forward block.

For each organism and batch size, masks/s with neither ("every mask, every position": the fast
path before these savings), with grouping, and with both, on the same samples and masks; the
values must be bit-identical in all three (checked, reported). Single-threaded by default, so
that another process on the second core disturbs the ratios less (``--threads 2`` for both).

    python benchmarks/bench_fast_path.py [--models s m l] [--batch-sizes 256 1024] [--masks 2000]
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ablation import show  # noqa: E402

MODES = {"every mask, every position": (False, False), "grouped": (True, False), "grouped + last position": (True, True)}


def main(argv=None) -> dict:
    import torch

    from hearlib.records.datasets import load_coco
    from hearlib.method.means import compute_means
    from hearlib.method.loading import load_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["s", "m", "l"], help="organism sizes")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--masks", type=int, default=2000, help="head masks per sample")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timings per setting (the fastest is kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data/scenes/study-60/coco",
                        help="COCO-format scenes (python -m hearlib scenes --out data/scenes/study-60 --n 60 --seed 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = load_coco(args.data)
    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor()
                    or platform.machine(), "torch": torch.__version__, "threads": args.threads, "masks": args.masks,
                    "samples": args.samples}
    for size in args.models:
        engine = load_engine(ROOT / f"data/models/hear-organism-{size}")
        means = compute_means(engine, [item.path for item in items[:32]], progress=False)
        samples = [engine.prepare(item.path, answer=item.label) for item in items[:args.samples]]
        masks = np.random.default_rng(0).random((args.masks, engine.n_total_heads)) < 0.75
        for batch in args.batch_sizes:
            rates, values = {}, {}
            for _ in range(args.repeats):
                for mode, (share, last) in MODES.items():
                    engine.share_prefixes, engine.last_position_only = share, last
                    started = time.perf_counter()
                    values[mode] = [engine.logits(s, means, masks, batch_size=batch) for s in samples]
                    rate = len(samples) * args.masks / (time.perf_counter() - started)
                    rates[mode] = max(rates.get(mode, 0.0), rate)
            reference = values["every mask, every position"]
            identical = all(np.array_equal(a, b) for mode in MODES for a, b in zip(values[mode], reference))
            key = f"{size} batch {batch}"
            for mode in MODES:
                result[f"{key}: {mode} masks/s"] = round(rates[mode], 1)
            result[f"{key}: speed-up"] = round(rates["grouped + last position"] / rates["every mask, every position"], 2)
            result[f"{key}: bit-identical"] = identical
        engine.share_prefixes = engine.last_position_only = True
    return show(result, args.json)


if __name__ == "__main__":
    main()
