"""A person's earlier answers to the questions most similar to a new one, by text embedding:
what Context + Raw Q shows the model and what the question-kNN reference averages."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..harness.data.survey import Survey
from .embedders import get_embedder


class QuestionSimilarity:
    """Cosine similarity between every pair of a survey's questions (question text with its options)."""

    def __init__(self, survey: Survey, embedder: str):
        keys = list(survey.questions)
        vectors = get_embedder(embedder).embed([survey.questions[k].with_options_text() for k in keys])
        self.matrix, self.position = vectors @ vectors.T, {key: i for i, key in enumerate(keys)}


def answers_by_person(answers: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Person -> (questions answered, options chosen), from rows with respondent, question, option."""
    return {person: (group["question"].to_numpy(), group["option"].to_numpy()) for person, group in answers.groupby("respondent")}


def nearest(
    asked: np.ndarray, chosen: np.ndarray, question: str, similarity: np.ndarray, position: dict[str, int], k: int
) -> list[tuple[str, int]]:
    """The ``k`` answered questions (``asked``, with options ``chosen``) most similar to ``question``,
    most similar first, itself excluded; ``similarity`` indexed through ``position``; ties go to the
    smaller question key."""
    keep = asked != question
    asked, chosen = asked[keep], chosen[keep]
    scores = similarity[position[question], [position[q] for q in asked]]
    order = np.lexsort((asked, -scores))[:k]
    return list(zip(asked[order], chosen[order]))
