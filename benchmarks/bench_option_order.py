"""Benchmark the cost of option-order control: scoring the same docs with the options in the given
order and under ``cyclic`` order (every rotation of each doc's options, distributions averaged).

For each method, both orders score the same eval people of the demo survey with SmolLM2-135M,
each with an empty LM score cache (a fresh folder), the prepared method shared; it prints the
prompts scored (shown copies), the forward rows and the scoring seconds, and the cyclic/given ratio
measured in the same process. Run from the repository root:

    python benchmarks/bench_option_order.py [--people 40] [--methods raw,demographics]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate

from persona_bench import RunConfig
from persona_bench.harness.data.protocol import scored_docs
from persona_bench.harness.runner import prepared_method
from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.scoring.option_order import ordered_docs


def scoring_seconds(config: RunConfig, runs_dir: Path) -> tuple[int, int, float]:
    """(shown copies, forward rows, seconds) of scoring ``config``'s docs with a fresh score cache."""
    os.environ["PERSONA_BENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-option-order-")
    method, context = prepared_method(config, runs_dir, lambda message: None)
    docs = ordered_docs(scored_docs(context._survey, context.split, config.users, config.max_eval_people, config.seed),
                        config.option_order)
    rows, forward = [0], LetterScoringLM.score_rows

    def counted(self, batch, wanted, payloads):
        rows[0] += len(batch)
        return forward(self, batch, wanted, payloads)

    LetterScoringLM.score_rows = counted
    try:
        started = time.perf_counter()
        method.score(docs.drop(columns=["target", "source"]), context)
        return len(docs), rows[0], time.perf_counter() - started
    finally:
        LetterScoringLM.score_rows = forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--methods", default="raw,demographics")
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for method in args.methods.split(","):
            given = RunConfig(method=method, max_eval_people=args.people)
            measured = {order: scoring_seconds(replace(given, option_order=order), Path(runs_dir)) for order in ("given", "cyclic")}
            for order, (copies, rows, seconds) in measured.items():
                table.append({"method": method, "order": order, "prompts scored": copies, "forward rows": rows,
                              "scoring s": f"{seconds:.1f}", "cyclic / given": f"{seconds / measured['given'][2]:.2f}"})
    print(tabulate(table, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
