"""What a trained steering run has learned, read from finished runs' samples (no model is run):
the paired difference from majority (per person, bootstrap CI), how often it predicts what the
majority reference predicts, its accuracy where it predicts something else (beside majority's own
accuracy on those docs: a departure pays where it is higher), its accuracy where a person's answer
is the majority's prediction and where it is not, and on how many questions its prediction varies
from person to person. A run that only learned each question's most common answer
agrees with majority everywhere and scores 0% where people differ from it; a persona-steered
run scores above that. Aggregates only (no per-person figure is printed). Run from the
repository root:

    python benchmarks/spm_agreement.py --runs RUNS_DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from persona_bench.harness.metrics.registry import paired_comparison
from persona_bench.harness.runs.record import RunRecord
from persona_bench.harness.runs.store import finished_runs, read_samples
from persona_bench.leaderboard.frame import budget_label, options_label, recipe_overrides


def runs_of(folder: Path) -> list[tuple[RunRecord, pd.DataFrame]]:
    """(record, samples) of every finished run in ``folder``."""
    return [(record, read_samples(folder / record.run_id)) for record in finished_runs(folder)[0]]


def run_label(record: RunRecord) -> str:
    """``spm mode=prompt, ... lr=0.003 10,000 answers x 1 epochs``: method, variant, recipe overrides, budget."""
    variant = record.variant
    budget = record.training.budget if record.training else None
    parts = [record.method, options_label(variant), options_label(recipe_overrides(record, variant)), budget_label(budget)]
    return " ".join(filter(None, parts))


def agreement_rows(runs: list[tuple[RunRecord, pd.DataFrame]]) -> list[dict]:
    """One row per run that shares its docs with the folder's majority run."""
    majority = next((samples for record, samples in runs if record.method == "majority"), None)
    if majority is None:
        raise SystemExit("no majority run in the folder: run `persona-bench run --method majority` with the same split")
    majority_prediction = majority.set_index("doc_id")["prediction"].rename("majority")
    rows = []
    for record, samples in runs:
        if record.method == "majority" or not samples["doc_id"].isin(majority_prediction.index).all():
            continue
        joined = samples.join(majority_prediction, on="doc_id")
        usual = joined["target"] == joined["majority"]
        departs = joined["prediction"] != joined["majority"]
        rows.append({
            "run": run_label(record),
            "macro acc %": round(100 * record.accuracy, 1),
            "vs majority (points, paired)": paired_comparison(samples, majority).in_points(),
            "agrees with majority %": round(100 * (~departs).mean(), 1),
            "acc where it departs from majority's %": round(100 * joined.loc[departs, "correct"].mean(), 1) if departs.any() else "",
            "majority's acc there %": round(100 * usual[departs].mean(), 1) if departs.any() else "",
            "acc where answer = majority's %": round(100 * joined.loc[usual, "correct"].mean(), 1),
            f"acc where answer != majority's % ({int((~usual).sum())} docs)": round(100 * joined.loc[~usual, "correct"].mean(), 1),
            "questions with >1 prediction": f"{int((joined.groupby('question')['prediction'].nunique() > 1).sum())} of {joined['question'].nunique()}",
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="a runs folder (e.g. of grids/w26-answer.yaml)")
    args = parser.parse_args()
    rows = sorted(agreement_rows(runs_of(args.runs)), key=lambda row: row["run"])
    print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
