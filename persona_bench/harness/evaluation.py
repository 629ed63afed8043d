"""Scoring docs through lm-eval: materialise them as JSONL, run the task, read the samples back.

The harness (not the method) adds each doc's ``target`` and ``choices``, so methods never see
answers they are scored on. lm-eval's own ``macro_acc`` must equal the macro accuracy of the
per-sample scores it returns; a mismatch is an error, not a silent discrepancy.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from ..tasks import TASKS_DIR
from ..tasks.prompts import letters
from .atomic import atomic_writer
from .metrics import per_person_accuracy
from .method import padded_scores
from .survey import Survey


def task_records(docs: pd.DataFrame, survey: Survey, targets: pd.Series, extra: list[dict] | None = None) -> list[dict]:
    """One lm-eval doc per row: ids, question text, options, answer letters, target, extras."""
    records = []
    for i, doc in enumerate(docs.itertuples(index=False)):
        question = survey.questions[doc.question]
        record = {
            "doc_id": doc.doc_id,
            "respondent": doc.respondent,
            "question_key": doc.question,
            "question": question.text,
            "options": list(question.options),
            "choices": letters(len(question.options)),
            "target": int(targets.iloc[i]),
        }
        records.append({**record, **(extra[i] if extra else {})})
    return records


def evaluate_records(records: list[dict], task: str, lm, docs_path, chat_template: bool = False) -> np.ndarray:
    """Run lm-eval task ``task`` over ``records`` with ``lm``; return per-doc option scores."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with atomic_writer(docs_path) as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"docs_path": str(docs_path)})
    output = simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, log_samples=True, apply_chat_template=chat_template, bootstrap_iters=0
    )
    by_id = {s["doc"]["doc_id"]: [score for score, _ in s["filtered_resps"]] for s in output["samples"][task]}
    scores = padded_scores([np.asarray(by_id[r["doc_id"]]) for r in records])
    reported = output["results"][task]["macro_acc,none"]
    correct = scores.argmax(axis=1) == np.array([r["target"] for r in records])
    ours = per_person_accuracy([r["respondent"] for r in records], correct).mean()
    if not np.isclose(reported, ours, atol=1e-12):
        raise RuntimeError(f"lm-eval reported macro_acc {reported} but its samples give {ours}")
    return scores
