"""``question-knn``: a text-based, LLM-free reference that needs no answer to the scored question.

For a person and a question, the person's own known answers to the ``k_neighbours`` most similar
other questions (text embedding of question and options, as Context + Raw Q retrieves them) are
mapped to [0, 1] on each question's ordinal scale and averaged; the option of the scored question
nearest that value wins. It is the reference of ``--protocol heldout-questions``, where no train
answer to an eval question exists (so neither majority nor collaborative filtering can predict
one); under the default protocol it is one more reference. A person with no known answer gets the
middle of the scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..harness.core.options import option
from ..harness.method.base import Method, register_method
from ..harness.method.context import RunContext
from .embedders import EMBEDDER_NAMES
from .retrieval import QuestionSimilarity, answers_by_person, nearest


@register_method
class QuestionKNN(Method):
    """The person's answers to the most similar questions, averaged on the ordinal scale."""

    name = "question-knn"
    kind = "reference"
    description = "the person's own answers to the k most similar questions by text embedding, averaged on the ordinal scale (no LLM)"

    @dataclass(frozen=True)
    class Options:
        k_neighbours: int = option(5, "the person's answers to this many most similar questions, averaged")
        embedder: str = option("minilm", "question embedder (openai needs OPENAI_API_KEY)", choices=EMBEDDER_NAMES)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        questions = context.survey.questions
        similar = QuestionSimilarity(context.survey, self.options.embedder)
        answered = answers_by_person(context.known_answers())
        nothing = (np.array([], dtype=object), np.array([], dtype=int))
        width = int(docs["n_options"].max())
        scores = np.full((len(docs), width), -np.inf)
        for row, doc in enumerate(docs.itertuples(index=False)):
            shown = nearest(*answered.get(doc.respondent, nothing), doc.question, similar.matrix, similar.position, self.options.k_neighbours)
            value = float(np.mean([questions[q].values[o] for q, o in shown])) if shown else 0.5
            scores[row, : doc.n_options] = -np.abs(np.asarray(questions[doc.question].values) - value)
        return scores
