"""lm-eval hooks of the ``opinionqa_persona`` task family (referenced from the YAML files).

Docs are JSON lines materialised from a Split by persona-bench (one per person x held-out
question); lm-eval finds them through the task metadata key ``docs_path``::

    lm_eval --include_path persona_bench/tasks --tasks opinionqa_persona_raw \\
        --metadata '{"docs_path": "runs/<run-id>/docs.jsonl"}' --model hf ...

Each doc yields ``(respondent, correct)`` under ``macro_acc``; the aggregation averages
accuracy per person, then over people (lm-eval's own per-doc mean would weight people by
how many answers they gave).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np

from persona_bench.tasks.prompts import context_prompt, demographics_prompt, raw_prompt, steered_prompt  # noqa: F401  (used by the YAML)


def load_docs(docs_path: str | None = None, **_metadata) -> datasets.DatasetDict:
    """The task's docs from the JSONL file named by the ``docs_path`` metadata key."""
    if not docs_path:
        raise ValueError("opinionqa_persona tasks need metadata docs_path (persona-bench writes it for each run)")
    path = Path(docs_path)
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_results(doc: dict, results: list[tuple[float, bool]]) -> dict:
    """``macro_acc``: (respondent, whether the top-scored letter is the person's answer)."""
    scores = [loglikelihood for loglikelihood, _ in results]
    return {"macro_acc": (doc["respondent"], int(np.argmax(scores)) == doc["target"])}


def macro_accuracy(items: list[tuple[str, bool]]) -> float:
    """Accuracy per person, averaged over people."""
    per_person: dict[str, list[bool]] = defaultdict(list)
    for person, correct in items:
        per_person[person].append(bool(correct))
    return float(np.mean([np.mean(answers) for answers in per_person.values()])) if per_person else float("nan")
