"""Benchmark the cost of option-order control: scoring the same docs with the options in the given
order and under ``cyclic`` order (every rotation of each doc's options, distributions averaged),
each with the scorer's shared stems (a stem shared by several rows runs once) and without them.

For each method, both orders score the same eval people of the demo survey with SmolLM2-135M,
each with an empty LM score cache (a fresh folder), the prepared method shared; it prints the
prompts scored (shown copies), the forward rows, the tokens the LM ran and the scoring seconds,
and each row's ratio to the given order without shared stems, measured in the same process. Run
from the repository root:

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


def scoring_seconds(config: RunConfig, runs_dir: Path, share_stems: bool) -> tuple[int, int, int, float]:
    """(shown copies, forward rows, tokens run, seconds) of scoring ``config``'s docs with a fresh score cache."""
    os.environ["PERSONA_BENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-option-order-")
    method, context = prepared_method(config, runs_dir, lambda message: None)
    docs = ordered_docs(scored_docs(context._survey, context.split, config.users, config.max_eval_people, config.seed),
                        config.option_order)
    counts, forward = {"rows": 0, "tokens": 0}, LetterScoringLM.score_rows

    def counted(self, batch, wanted, payloads, stems=None):
        counts["rows"] += len(batch)
        counts["tokens"] += sum(len(tokens) - (stems[i] if stems else 0) for i, (_, tokens) in enumerate(batch))
        return forward(self, batch, wanted, payloads, stems)

    default = LetterScoringLM.shares_stems
    LetterScoringLM.score_rows, LetterScoringLM.shares_stems = counted, share_stems
    try:
        started = time.perf_counter()
        method.score(docs.drop(columns=["target", "source"]), context)
        return len(docs), counts["rows"], counts["tokens"], time.perf_counter() - started
    finally:
        LetterScoringLM.score_rows, LetterScoringLM.shares_stems = forward, default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--methods", default="raw,demographics")
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for method in args.methods.split(","):
            given = RunConfig(method=method, max_eval_people=args.people)
            measured = {(order, share): scoring_seconds(replace(given, option_order=order), Path(runs_dir), share)
                        for order in ("given", "cyclic") for share in (False, True)}
            baseline = measured["given", False][3]
            for (order, share), (copies, rows, tokens, seconds) in measured.items():
                table.append({"method": method, "order": order, "shared stems": "yes" if share else "no", "prompts scored": copies,
                              "forward rows": rows, "tokens run": tokens, "scoring s": f"{seconds:.1f}",
                              "/ given without": f"{seconds / baseline:.2f}"})
    print(tabulate(table, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
