"""Time the head explorer's updates (hearlib.paper.explore.ui.ExplorerUI) on a filled store, read-only.

    python benchmarks/explore_updates.py --profile ci --data data/scenes/study-60 --store build/store-ci

Opens the explorer as notebooks/00_explore does (HEARLIB_READ_ONLY, so nothing is computed),
then times changing the sample (first visit and revisit) and picking a head, and renders the
static panels to --png."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--data", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--png", default="build/explore/static.png")
    args = parser.parse_args()
    os.environ["HEARLIB_READ_ONLY"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    from hearlib.paper.explore.drawing import draw_static, figure_png
    from hearlib.paper.explore.ui import ExplorerUI, open_explorer
    from hearlib.io import save_bytes
    from hearlib.paper.plan import profile_params

    p = profile_params(args.profile, data=args.data)
    started = time.perf_counter()
    opener = partial(open_explorer, store=args.store, profile=p["profile"], n_samples=p["n_samples"],
                     correct_only=p["correct_only"], n_masks=p["n_masks"], ratio=p["ratio"], seed=p["seed"],
                     n_mean_images=p["n_mean_images"], method=p["method"], batch_size=p["batch_size"])
    ui = ExplorerUI(opener, [p["model"]], [args.data])
    print(f"open (first sample drawn): {time.perf_counter() - started:.2f} s")
    ex = ui.ex
    ids = [str(it.image_id) for it in ex.items]
    times = {"sample (first visit)": [], "sample (revisit)": [], "head": [], "k": []}
    for label in ("sample (first visit)", "sample (revisit)"):
        for sid in ids[1:] + ids[:1]:
            t = time.perf_counter()
            ui.sample.value = sid
            times[label].append(time.perf_counter() - t)
    for n, _, _ in ex.heads_by_theta(ex.items[0])[:8]:
        t = time.perf_counter()
        ui.grid.children[n].click()
        times["head"].append(time.perf_counter() - t)
    for k in range(1, 6):
        t = time.perf_counter()
        ui.k.value = k
        times["k"].append(time.perf_counter() - t)
    for label, values in times.items():
        print(f"{label:>22}: median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
              f"({len(values)} updates)")
    assert not ex.study.pipeline.computed and not ex.study.pipeline.engine_loaded, "the explorer computed something"
    item = ex.items[0]
    fig = draw_static(ex, item, ex.heads_by_theta(item)[0][0], ex.sample_info(item).get("k_star", 1))
    print("static panels:", save_bytes(args.png, lambda f: f.write(figure_png(fig, dpi=100))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
