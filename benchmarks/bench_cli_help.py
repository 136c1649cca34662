"""How long ``python -m hearlib [COMMAND] --help`` takes (a lazy CLI imports no torch for help).

Run alone: ``python benchmarks/bench_cli_help.py``; prints the median of 5 runs per command, in seconds,
and its ratio to a bare ``python -c pass`` (the interpreter's own start-up)."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seconds(argv, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from hearlib.cli import COMMANDS

    bare = seconds([sys.executable, "-c", "pass"])
    print(f"python -c pass: {bare:.2f} s")
    for command in ["", *COMMANDS]:
        t = seconds([sys.executable, "-m", "hearlib", *([command] if command else []), "--help"])
        print(f"hearlib {command or ''} --help: {t:.2f} s ({t / bare:.1f}x the bare interpreter)")


if __name__ == "__main__":
    main()
