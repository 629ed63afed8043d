"""Benchmark the collaborative-filtering fit (persona_bench.harness.personas.cf) for speed and memory.

For each solver (ALS and the paper's Adam path, both with their default settings) it measures:

* fit seconds (time.perf_counter around the fit) on n_train_answers answers,
* peak RSS during the fit, and how much of it the fit added over the data already loaded
  (every fit runs in a fresh 'spawn' subprocess; the kernel's RSS high-water mark is reset
  through /proc/self/clear_refs just before the fit and read from VmHWM just after),
* train and held-out RMSE,
* fold-in time for 1,000 unseen people who revealed K=10 answers each.

Data:

* synthetic: OpinionQA's full size, 18,339 people x 1,476 questions, 2,000,000 answers
  (7.4% dense), values = low-rank structure + biases + noise squashed into [0, 1] and rounded
  to 4 ordinal levels; a random 10% of the answers is held out. Seeded, so reruns match.
* real: W26 + W41 from ../shared/data/opinionqa (skipped with a note when absent), split with
  make_split's defaults and fitted through fit_personas, so "fit s" there is the whole
  fit_personas call (CF fit plus its RMSE bookkeeping) and held-out RMSE is rmse["heldout_seen"].
  Fold-in there goes through PersonaSpace.fold_in on split.fold_in_answers(10).

Run from the repository root:

    python benchmarks/bench_cf.py            # full size (a few minutes on 2 cores)
    python benchmarks/bench_cf.py --quick    # synthetic shrunk 10x, a smoke run

Target: the ALS fit on the full-size synthetic matrix takes under 30 s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from persona_bench.harness.personas.cf import SOLVERS, Ratings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "opinionqa"
FULL = dict(n_people=18_339, n_questions=1_476, n_answers=2_000_000)
ALS_TARGET_S = 30.0


# ----------------------------------------------------------------------------- memory
def rss_mib(field: str) -> float:
    """VmRSS or VmHWM of this process, in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # then VmHWM is the peak since the process started: an upper bound


# ----------------------------------------------------------------------------- synthetic data
def synthetic(n_people: int, n_questions: int, n_answers: int, n_unseen: int = 1000, k: int = 10, rank: int = 8, seed: int = 0):
    """Train / held-out / fold-in Ratings drawn from one low-rank model with noise."""
    rng = np.random.default_rng(seed)
    people = rng.normal(0, 1, (n_people + n_unseen, rank))
    questions = rng.normal(0, 1 / np.sqrt(rank), (n_questions, rank))
    person_bias, question_bias = rng.normal(0, 0.5, n_people + n_unseen), rng.normal(0, 0.5, n_questions)

    def values(users, items):
        score = person_bias[users] + question_bias[items] + np.einsum("nr,nr->n", people[users], questions[items])
        score += rng.normal(0, 0.5, len(users))
        return np.round(3 / (1 + np.exp(-score))) / 3  # 4 ordinal levels in [0, 1]

    cells = rng.choice(n_people * n_questions, size=n_answers, replace=False)
    users, items = cells // n_questions, cells % n_questions
    answers = values(users, items)
    heldout = rng.random(n_answers) < 0.1
    train = Ratings(users[~heldout], items[~heldout], answers[~heldout], n_people, n_questions)
    test = Ratings(users[heldout], items[heldout], answers[heldout], n_people, n_questions)
    new_users = np.repeat(np.arange(n_unseen), k)
    new_items = np.concatenate([rng.choice(n_questions, k, replace=False) for _ in range(n_unseen)])
    unseen = Ratings(new_users, new_items, values(new_users + n_people, new_items), n_unseen, n_questions)
    return train, test, unseen


# ----------------------------------------------------------------------------- one fit, in a child process
def set_threads(threads: int | None) -> int:
    """Apply --torch-threads (None: torch's default) and return the count in effect."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def run_synthetic(solver: str, size: dict, threads: int | None) -> dict:
    threads = set_threads(threads)
    train, test, unseen = synthetic(**size)
    model = SOLVERS[solver]()
    before = rss_mib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    start = time.perf_counter()
    model.fold_in(unseen)
    fold_s = time.perf_counter() - start
    return dict(
        data="synthetic", solver=solver, threads=threads, n_people=train.n_users, n_questions=train.n_items, n_train_answers=len(train.values),
        fit_s=fit_s, peak_rss_mib=peak, fit_added_mib=peak - before,
        train_rmse=model.rmse(model.user_vectors(), train), heldout_rmse=model.rmse(model.user_vectors(), test),
        fold_in_1000_k10_s=fold_s,
    )


def run_real(solver: str, threads: int | None) -> dict:
    from persona_bench.harness.data.loaders import load_survey
    from persona_bench.harness.personas.space import fit_personas
    from persona_bench.harness.data.protocol import make_split

    threads = set_threads(threads)
    survey = load_survey(f"opinionqa:{DATA}", waves=["W26", "W41"])
    split = make_split(survey)
    revealed = split.fold_in_answers(10)
    revealed = revealed[revealed["respondent"].isin(sorted(revealed["respondent"].unique())[:1000])]
    before = rss_mib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    space = fit_personas(survey, split, solver=solver)
    fit_s = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    start = time.perf_counter()
    people, _ = space.fold_in(revealed)
    fold_s = time.perf_counter() - start
    assert len(people) == min(1000, revealed["respondent"].nunique())
    return dict(
        data="W26+W41", solver=solver, threads=threads, n_people=len(space.people), n_questions=len(space.questions), n_train_answers=len(split.train_answers()),
        fit_s=fit_s, peak_rss_mib=peak, fit_added_mib=peak - before,
        train_rmse=space.rmse["train"], heldout_rmse=space.rmse["heldout_seen"], fold_in_1000_k10_s=fold_s,
    )


def in_fresh_process(function, *args) -> dict:
    """Run ``function(*args)`` in a new spawned interpreter, so its peak RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


# ----------------------------------------------------------------------------- main
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer synthetic people and answers (same questions, same density)")
    parser.add_argument("--solvers", nargs="+", default=["als", "adam"], choices=sorted(SOLVERS))
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads in each fit (default: torch's own)")
    args = parser.parse_args()

    size = dict(FULL, n_people=FULL["n_people"] // 10, n_answers=FULL["n_answers"] // 10) if args.quick else FULL
    rows = []
    for solver in args.solvers:
        rows.append(in_fresh_process(run_synthetic, solver, size, args.torch_threads))
        print(f"synthetic {solver}: fit {rows[-1]['fit_s']:.1f} s", flush=True)
    if DATA.is_dir():
        for solver in args.solvers:
            rows.append(in_fresh_process(run_real, solver, args.torch_threads))
            print(f"W26+W41 {solver}: fit {rows[-1]['fit_s']:.1f} s", flush=True)
    else:
        print(f"note: {DATA} is absent, skipping the real-data rows")

    print(f"\n{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f} (other processes skew the timings)")
    print(tabulate(rows, headers="keys", floatfmt=".3f", intfmt=","))
    als = [row for row in rows if row["data"] == "synthetic" and row["solver"] == "als"]
    if als and not args.quick:
        verdict = "PASS" if als[0]["fit_s"] < ALS_TARGET_S else "FAIL"
        print(f"\nALS full-size fit {als[0]['fit_s']:.1f} s (target < {ALS_TARGET_S:.0f} s): {verdict}")
