"""Benchmark the shared score cache (``<cache>/scores.sqlite``) under concurrent writers.

``N`` processes (1, 2, 4, 8) open one fresh cache, as ``N`` ``persona-bench run`` processes on
one machine do, and each repeats what a scoring batch does: look up ``--batch`` keys (half of them
written before, by any process) and write the ``--batch / 2`` new scores. It prints, per ``N``,
the scores read and written per second by all processes together, the slowest single write
(the wait for SQLite's write lock), any failure ("database is locked" included: the cache
would turn itself off), and whether every written score reads back afterwards. Run from the
repository root:

    python benchmarks/bench_cache_load.py [--rounds 200] [--batch 128] [--writers 1 2 4 8]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_bench.harness.scoring.lm import ScoreCache  # noqa: E402


def writer(path: str, worker: int, rounds: int, batch: int, start, results) -> None:
    """One process: ``rounds`` of (look up ``batch`` keys, write ``batch // 2`` new scores)."""
    cache = ScoreCache(Path(path))
    start.wait()
    began, slowest, read = time.perf_counter(), 0.0, 0
    for number in range(rounds):
        new = [f"w{worker}-r{number}-{i}" for i in range(batch // 2)]
        old = [f"w{worker}-r{max(number - 1, 0)}-{i}" for i in range(batch // 2)]
        read += len(cache.get_many(old + new))
        put = time.perf_counter()
        cache.put_many({key: (-float(i), i % 2 == 0) for i, key in enumerate(new)})
        slowest = max(slowest, time.perf_counter() - put)
    results.put((worker, time.perf_counter() - began, read, slowest, cache.connection is not None))


def measure(writers: int, rounds: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "scores.sqlite")
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(writers), context.Queue()
        processes = [context.Process(target=writer, args=(path, w, rounds, batch, start, results)) for w in range(writers)]
        for process in processes:
            process.start()
        outcomes = [results.get() for _ in processes]
        for process in processes:
            process.join()
        seconds = max(o[1] for o in outcomes)
        written = writers * rounds * (batch // 2)
        with sqlite3.connect(path) as check:
            stored = check.execute("SELECT count(*) FROM scores").fetchone()[0]
            intact = check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {
        "writers": writers,
        "scores written/s": round(written / seconds),
        "scores read/s": round(sum(o[2] for o in outcomes) / seconds),
        "slowest write (ms)": round(1000 * max(o[3] for o in outcomes), 1),
        "cache turned off": sum(not o[4] for o in outcomes),
        "all written scores stored": stored == written and intact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    rows = [measure(n, args.rounds, args.batch) for n in args.writers]
    print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
