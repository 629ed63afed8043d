"""Full-size scale test: a synthetic survey of OpinionQA's size through the no-LLM pipeline.

``demo:18000x1476`` (18,000 people, 1,476 questions in 10 waves of ~150, each person answering
one wave, ~2.2M answers, about as sparse as OpinionQA) goes through every stage a run does before any
language model: generation, the split, collaborative filtering (ALS, d=16), cluster personas
(K-Means, k=6) and demographic personas, then the references majority, demographic-majority
and cf scored on every eval person. Prints seconds and the process's peak RSS after each stage.
Run from the repository root:

    python benchmarks/bench_scale.py [--data demo:18000x1476]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tabulate import tabulate  # noqa: E402

from persona_bench import evaluate  # noqa: E402
from persona_bench.harness.runs.config import RunConfig  # noqa: E402
from persona_bench.harness.data.loaders import load_survey  # noqa: E402
from persona_bench.harness.personas.kind import PersonaKind  # noqa: E402
from persona_bench.harness.personas.space import fit_personas, persona_vectors  # noqa: E402
from persona_bench.harness.data.protocol import SplitConfig, make_split  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo:18000x1476")
    args = parser.parse_args()
    rows, clock = [], time.perf_counter()

    def stage(name: str, detail: str = "") -> None:
        nonlocal clock
        rows.append([name, f"{time.perf_counter() - clock:.1f}", f"{peak_mib():,.0f}", detail])
        clock = time.perf_counter()

    survey = load_survey(args.data)
    stage("generate survey", f"{len(survey.respondents):,} people, {len(survey.questions):,} questions, {len(survey.responses):,} answers, {len(survey.waves)} waves")
    split = make_split(survey, SplitConfig(0))
    stage("split", f"{len(split.train_answers()):,} train answers")
    space = fit_personas(survey, split, "als", 16, 0)
    stage("CF fit (ALS, d=16) + held-out RMSE", ", ".join(f"{k} {v:.3f}" for k, v in space.rmse.items()))
    index, vectors = space.for_users(split, "seen")
    persona_vectors(space, PersonaKind.parse("cluster:6"), index, vectors, survey.respondents, split, 0)
    stage("cluster personas (k=6)")
    persona_vectors(space, PersonaKind.parse("demographic:POLPARTYxEDUCATION"), index, vectors, survey.respondents, split, 0)
    stage("demographic personas (POLPARTY x EDUCATION)")
    with tempfile.TemporaryDirectory() as runs:
        for method in ("majority", "demographic-majority", "cf"):
            result = evaluate(RunConfig(method=method, data=args.data), Path(runs), log=lambda message: None)
            stage(f"run {method} (all eval people)", f"{result.n_people:,} people, {result.n_answers:,} docs, accuracy {100 * result.accuracy:.1f}%")
    print(f"{args.data}: CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(tabulate(rows, headers=["stage", "seconds", "peak RSS MiB (so far)", "detail"], tablefmt="github"))


if __name__ == "__main__":
    main()
