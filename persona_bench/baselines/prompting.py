"""Prompt baselines (Li et al. 2023, Sec. 5.1), each an lm-eval task of the opinionqa_persona family.

* ``raw``: the question and its lettered options (Raw Q);
* ``demographics``: the person's 12 traits, then the question (Demographics + Raw Q);
* ``context``: the ``--k-context`` questions this person answered (seen users: their train
  answers; unseen users: their K revealed answers) that are most similar to the asked one by
  text embedding, with their answers, then the question (Context + Raw Q).

Each takes ``--calibrate content-free`` (contextual calibration, Zhao et al. 2021): the same prompt
with the question and every option replaced by "N/A" is scored too, and the answer distribution is
divided by that content-free one (per doc, so a person's traits or context stay in both): a letter
the model favours whatever the question loses its head start.

The exact prompts are in :mod:`persona_bench.tasks.prompts`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ..harness.core.errors import ConfigError
from ..harness.core.options import option
from ..harness.method.base import Method, register_method
from ..harness.method.context import RunContext
from ..harness.scoring.lm import LetterScoringLM
from .embedders import EMBEDDER_NAMES
from .retrieval import QuestionSimilarity, answers_by_person, nearest

CALIBRATIONS = ("none", "content-free")
CONTENT_FREE = "N/A"  # Zhao et al. 2021's content-free input


class PromptMethod(Method):
    """A frozen LM prompted with text only; subclasses add per-doc fields for their prompt."""

    kind = "prompting"
    needs_model = True
    task: ClassVar[str]

    @dataclass(frozen=True)
    class Options:
        chat_template: bool = option(False, "wrap the prompt in the model's chat template")
        calibrate: str = option("none", "content-free: divide the answer distribution by the model's on the same prompt with "
                                        "question and options replaced by N/A (Zhao et al. 2021)", choices=CALIBRATIONS)

    def doc_fields(self, docs: pd.DataFrame, context: RunContext) -> list[dict] | None:
        """Extra fields each doc needs for this prompt style (none for Raw Q)."""
        return None

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        lm = LetterScoringLM(**context.model_options)
        if self.options.chat_template and not lm.tokenizer.chat_template:
            raise ConfigError(f"--chat-template: model {context.config.model!r} has no chat template")
        fields = self.doc_fields(docs, context)
        scores = context.evaluate(self.task, docs, lm, fields, self.options.chat_template)
        blank = self.content_free_fields(docs, fields)
        if blank is None:
            return scores
        free = context.evaluate(self.task, docs, lm, blank, self.options.chat_template, docs_file="docs-content-free.jsonl")
        return None if scores is None else calibrated(scores, free)  # every rank scores both; rank 0 gets the scores

    def content_free_fields(self, docs: pd.DataFrame, fields: list[dict] | None) -> list[dict] | None:
        """The doc fields of the content-free pass: the prompt's own fields, question and options N/A
        (None without ``--calibrate``; the cost plan counts them too)."""
        if self.options.calibrate == "none":
            return None
        return [{**(fields[i] if fields else {}), "question": CONTENT_FREE, "options": [CONTENT_FREE] * int(n)}
                for i, n in enumerate(docs["n_options"])]


def calibrated(scores: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Log of the answer distribution divided by the content-free one (then renormalised; ``-inf``
    past a question's last option): contextual calibration with a diagonal W = diag(p_cf)^-1."""
    def log_distribution(values: np.ndarray) -> np.ndarray:
        return values - np.logaddexp.reduce(values, axis=1, keepdims=True)

    adjusted = log_distribution(scores) - np.where(np.isfinite(content_free), log_distribution(content_free), 0.0)
    return log_distribution(np.where(np.isfinite(scores), adjusted, -np.inf))


def demographics_fields(rows: pd.DataFrame, context: RunContext) -> list[dict]:
    """Per (respondent, question) row, the person's traits (Demographics + Raw Q)."""
    traits = context.survey.respondents.loc[rows["respondent"], list(context.survey.traits)]
    return [{"traits": row} for row in traits.to_dict(orient="records")]


def context_fields(rows: pd.DataFrame, context: RunContext, answered: pd.DataFrame, k: int, embedder: str) -> list[dict]:
    """Per (respondent, question) row, the ``k`` answers of that person in ``answered`` (respondent,
    question, option rows) to the questions most similar to the row's, the row's own excluded (Context + Raw Q)."""
    questions = context.survey.questions
    similar = QuestionSimilarity(context.survey, embedder)
    by_person = answers_by_person(answered)
    nothing = (np.array([], dtype=object), np.array([], dtype=int))
    fields = []
    for row in rows[["respondent", "question"]].itertuples(index=False):
        shown = nearest(*by_person.get(row.respondent, nothing), row.question, similar.matrix, similar.position, k)
        fields.append({"context": [{"question": questions[q].text, "options": list(questions[q].options), "answer": int(o)} for q, o in shown]})
    return fields


@register_method
class RawQuestion(PromptMethod):
    name = "raw"
    description = "Raw Q: the question alone"
    task = "opinionqa_persona_raw"


@register_method
class Demographics(PromptMethod):
    name = "demographics"
    description = "Demographics + Raw Q: the person's traits, then the question"
    task = "opinionqa_persona_demographics"

    def doc_fields(self, docs: pd.DataFrame, context: RunContext) -> list[dict]:
        return demographics_fields(docs, context)


@register_method
class Context(PromptMethod):
    name = "context"
    description = "Context + Raw Q: the person's most similar earlier answers, then the question"
    task = "opinionqa_persona_context"

    @dataclass(frozen=True)
    class Options(PromptMethod.Options):
        k_context: int = option(5, "the person's earlier answers shown, most similar questions first (paper: 3, 5, 8, 10)")
        embedder: str = option("minilm", "question embedder (openai: text-embedding-ada-002, needs OPENAI_API_KEY)", choices=EMBEDDER_NAMES)

    def doc_fields(self, docs: pd.DataFrame, context: RunContext) -> list[dict]:
        return context_fields(docs, context, context.known_answers(), self.options.k_context, self.options.embedder)

    def most_similar(self, answered: pd.DataFrame, question: str, similarity: pd.DataFrame) -> list[tuple[str, int]]:
        """The ``k_context`` answered questions most similar to ``question`` (most similar first)."""
        position = {key: i for i, key in enumerate(similarity.index)}
        return nearest(answered["question"].to_numpy(), answered["option"].to_numpy(), question, similarity.to_numpy(), position, self.options.k_context)
