"""Benchmark start-up: how long ``import persona_bench``, a first public name and
``persona-bench --help`` take in a fresh interpreter (the public names load lazily, so importing
the package must stay cheap). Prints the median and the fastest of ``--repeats`` fresh processes
each, and what the bare interpreter costs for comparison. Run from the repository root:

    python benchmarks/bench_startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from tabulate import tabulate

CASES = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "import persona_bench": [sys.executable, "-c", "import persona_bench"],
    "persona_bench.RunConfig (first public name)": [sys.executable, "-c", "import persona_bench; persona_bench.RunConfig"],
    "persona_bench.evaluate (the pipeline)": [sys.executable, "-c", "import persona_bench; persona_bench.evaluate"],
    "persona-bench --help": [sys.executable, "-m", "persona_bench", "--help"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for label, command in CASES.items():
        timed(command)  # warm the file cache
        times = [timed(command) for _ in range(args.repeats)]
        rows.append([label, f"{statistics.median(times):.3f}", f"{min(times):.3f}"])
    print(tabulate(rows, headers=["fresh process", "median s", "fastest s"], tablefmt="github"))


if __name__ == "__main__":
    main()
