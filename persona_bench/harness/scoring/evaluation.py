"""Scoring docs through lm-eval: materialise them as JSONL, run the task, read the samples back.

The harness (not the method) adds each doc's ``target`` and ``choices``, so methods never see
answers they are scored on. lm-eval's own ``macro_acc`` must equal the macro accuracy of the
per-sample scores it returns; a mismatch is an error, not a silent discrepancy.

Under a data-parallel launch every rank calls :func:`evaluate_records` with the same records;
lm-eval gives each rank its share of the docs (through the model's ``rank`` and
``world_size``) and gathers the samples on rank 0, which alone gets the scores back.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from ...tasks import TASKS_DIR
from ...tasks.prompts import letters
from ..core.atomic import atomic_writer
from ..core.distributed import World
from ..data.pseudonyms import NO_PSEUDONYMS, Pseudonyms
from ..data.survey import Survey
from ..metrics.registry import per_person_accuracy
from .option_order import positions


def padded_scores(rows: list[np.ndarray], width: int | None = None) -> np.ndarray:
    """Stack ragged per-doc option scores into one array padded with ``-inf``."""
    width = width or max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -np.inf)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@contextmanager
def without_lm_eval_provenance() -> Iterator[None]:
    """lm-eval's ``simple_evaluate`` adds to its results the git hash of the current folder and a
    survey of the machine; persona-bench discards both (a run records its own provenance). The git
    call prints ``fatal: not a git repository`` wherever the current folder is not a checkout
    (EleutherAI/lm-evaluation-harness#1691, #2625) and the survey costs 0.5-2.7 s per
    evaluation, so while inside, both are skipped (lm-eval's results then say ``git_hash: None``)."""
    import lm_eval.evaluator

    with mock.patch.object(lm_eval.evaluator, "get_git_commit_hash", lambda: None), \
            mock.patch.object(lm_eval.evaluator, "add_env_info", lambda storage: None):
        yield


def task_records(docs: pd.DataFrame, survey: Survey, targets: pd.Series, extra: list[dict] | None = None) -> list[dict]:
    """One lm-eval doc per row: ids, question text, options in the doc's ``order`` (given when it has
    none), each option's answer letter (so lm-eval's scores stay indexed by option), target, extras."""
    records = []
    for i, doc in enumerate(docs.itertuples(index=False)):
        question = survey.questions[doc.question]
        order = getattr(doc, "order", None) or tuple(range(len(question.options)))  # see option_order
        letter = letters(len(question.options))
        record = {
            "doc_id": doc.doc_id,
            "respondent": doc.respondent,
            "question_key": doc.question,
            "question": question.text,
            "options": [question.options[index] for index in order],  # as shown, A first
            "choices": [letter[position] for position in positions(order)],  # each option's letter, by option
            "target": int(targets.iloc[i]),
        }
        records.append({**record, **(extra[i] if extra else {})})
    return records


def written_doc_id(record: dict, names: Pseudonyms) -> str:
    """A record's doc id as the docs file holds it (with pseudonyms: built from the written name
    and the question, as :func:`task_records` records them)."""
    if not names.hides_ids:
        return record["doc_id"]
    copy = record["doc_id"][len(f"{record['respondent']}|{record['question_key']}"):]  # a rotated copy's suffix (option_order)
    return names.doc_id(record["respondent"], record["question_key"]) + copy


def evaluate_records(
    records: list[dict], task: str, lm, docs_path: Path, chat_template: bool = False, world: World | None = None,
    names: Pseudonyms = NO_PSEUDONYMS,
) -> np.ndarray | None:
    """Run lm-eval task ``task`` over ``records`` with ``lm``; per-doc option scores on rank 0, None
    elsewhere. The docs file names respondents as ``names`` writes them (lm-eval only groups by them)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    world = world or World()
    if world.is_main:
        with atomic_writer(docs_path) as handle:
            written = [{**r, "doc_id": written_doc_id(r, names), "respondent": names.name(r["respondent"])} for r in records]
            if names.hides_ids:  # in the pseudonyms' order: the ids' order would name them
                written.sort(key=lambda r: r["doc_id"])
            handle.writelines(json.dumps(record) + "\n" for record in written)
    world.barrier()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"docs_path": str(docs_path)})
    with without_lm_eval_provenance():
        output = simple_evaluate(
            model=lm, tasks=[task], task_manager=manager, log_samples=True, apply_chat_template=chat_template, bootstrap_iters=0
        )
    if output is None:  # another rank: its samples went to rank 0
        return None
    by_id = {s["doc"]["doc_id"]: [score for score, _ in s["filtered_resps"]] for s in output["samples"][task]}
    scores = padded_scores([np.asarray(by_id[written_doc_id(r, names)]) for r in records])
    reported = output["results"][task]["macro_acc,none"]
    correct = scores.argmax(axis=1) == np.array([r["target"] for r in records])
    ours = per_person_accuracy([r["respondent"] for r in records], correct).mean()
    if not np.isclose(reported, ours, atol=1e-12):
        raise RuntimeError(f"lm-eval reported macro_acc {reported} but its samples give {ours}")
    return scores
