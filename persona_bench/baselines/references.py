"""Reference predictors that need no language model: the floor every steering method must beat.

* ``majority``: the train population's most common answer to the question.
* ``demographic-majority``: the most common answer within the person's trait group
  (``--traits POLPARTY`` by default, combinations as ``EDUCATIONxPOLPARTY``); groups with no
  train answer to a question fall back to the population.
* ``letter-prior``: the train split's most common answer position (A, B, ...) among questions
  with as many options, shown in the run's ``--option-order``: the best rule that reads the
  letter, never the question (under ``cyclic`` every position is as common: nothing to exploit).
* ``cf``: collaborative filtering. A per-question softmax classifier over persona vectors,
  trained on the train people's own vectors and answers, picks the option (better than
  rounding the predicted value for questions whose options are not evenly spaced or are
  rarely chosen); it follows ``--persona`` like any persona method.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..harness.core.options import option
from ..harness.method.base import Method, register_method
from ..harness.method.context import RunContext
from ..harness.personas.space import trait_groups
from ..harness.scoring.option_order import display_order, positions


def option_counts(answers: pd.DataFrame, keys: list[str], width: int) -> pd.DataFrame:
    """Counts of each option index per ``keys`` group, columns 0..width-1."""
    counts = answers.groupby([*keys, "option"]).size().unstack("option", fill_value=0)
    return counts.reindex(columns=range(width), fill_value=0)


def counts_to_scores(counts: np.ndarray, docs: pd.DataFrame) -> np.ndarray:
    """Counts (one row per doc) as scores, ``-inf`` past each doc's options."""
    valid = np.arange(counts.shape[1])[None, :] < docs["n_options"].to_numpy()[:, None]
    return np.where(valid, counts, -np.inf)


@register_method
class Majority(Method):
    """The most common answer of the train population."""

    name = "majority"
    kind = "reference"
    description = "most common train answer per question (no LLM)"
    protocols = ("answers", "cross-wave")  # needs train answers to the scored question
    scores_are = "counts"  # its distribution is the train population's

    def prepare(self, context: RunContext) -> None:
        self.width = max(len(q.options) for q in context.survey.questions.values())
        self.counts = option_counts(context.train_answers(), ["question"], self.width)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        counts = self.counts.reindex(docs["question"]).fillna(0).to_numpy(dtype=float)
        return counts_to_scores(counts, docs)


@register_method
class DemographicMajority(Method):
    """The most common answer of the person's demographic group."""

    name = "demographic-majority"
    kind = "reference"
    description = "most common train answer within the person's trait group (no LLM)"
    protocols = ("answers", "cross-wave")  # needs train answers to the scored question
    scores_are = "counts"

    @dataclass(frozen=True)
    class Options:
        traits: str = option("POLPARTY", "one trait or a combination, e.g. EDUCATIONxPOLPARTY")

    def group_of(self, context: RunContext, people: pd.Series) -> np.ndarray:
        groups = trait_groups(context.survey.respondents, tuple(self.options.traits.split("x")))
        return groups.reindex(people).to_numpy()

    def prepare(self, context: RunContext) -> None:
        answers = context.train_answers()
        answers["group"] = self.group_of(context, answers["respondent"])
        self.width = max(len(q.options) for q in context.survey.questions.values())
        self.population = option_counts(answers, ["question"], self.width)
        self.by_group = option_counts(answers, ["group", "question"], self.width)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        keys = pd.MultiIndex.from_arrays([self.group_of(context, docs["respondent"]), docs["question"]])
        group = self.by_group.reindex(keys).fillna(0).to_numpy(dtype=float)
        population = self.population.reindex(docs["question"]).fillna(0).to_numpy(dtype=float)
        # population shares break ties and fill groups that never answered the question
        shares = population / np.maximum(population.sum(axis=1, keepdims=True), 1)
        return counts_to_scores(group + 0.5 * shares, docs)


@register_method
class LetterPrior(Method):
    """The most common answer position among train answers to questions with as many options."""

    name = "letter-prior"
    kind = "reference"
    description = "most common train answer position (A, B, ...) per number of options, in the run's option order (no LLM)"
    protocols = ("answers", "heldout-questions", "cross-wave")  # positions of any train answers
    scores_are = "counts"

    def prepare(self, context: RunContext) -> None:
        answers = context.train_answers()
        n_options = answers["question"].map({key: len(q.options) for key, q in context.survey.questions.items()}).to_numpy()
        self.width = max(len(q.options) for q in context.survey.questions.values())
        self.counts = np.zeros((self.width + 1, self.width))  # [number of options, shown position]
        for n in np.unique(n_options):
            chosen = answers["option"].to_numpy()[n_options == n]
            if context.config.option_order == "cyclic":  # every rotation shows each answer once at every position
                self.counts[n, :n] = len(chosen)
            else:
                shown_at = np.array(positions(display_order(int(n), context.config.option_order)))
                self.counts[n, :n] = np.bincount(shown_at[chosen], minlength=n)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        scores = np.zeros((len(docs), self.width))
        given = [tuple(range(n)) for n in docs["n_options"]]
        for row, (n, order) in enumerate(zip(docs["n_options"], docs["order"] if "order" in docs else given)):
            scores[row, :n] = self.counts[n, positions(order)]
        return counts_to_scores(scores, docs)


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """Torch's deterministic algorithms while inside (the gradient of an indexed weight is
    otherwise summed in a thread-dependent order: a rerun differed at 1e-7), restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


class OptionClassifier:
    """Per-question multinomial logistic regression on persona vectors (trained jointly)."""

    def __init__(self, n_questions: int, width: int, dim: int, seed: int, steps: int = 300, batch: int = 16384):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(n_questions, width, dim, generator=generator) * 0.01)
        self.bias = torch.nn.Parameter(torch.zeros(n_questions, width))
        self.generator, self.steps, self.batch = generator, steps, batch

    def logits(self, features: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,nod->no", features, self.weight[questions]) + self.bias[questions]

    def fit(self, features: np.ndarray, questions: np.ndarray, targets: np.ndarray, valid: np.ndarray) -> "OptionClassifier":
        x, q = torch.tensor(features, dtype=torch.float32), torch.tensor(questions)
        y, mask = torch.tensor(targets), torch.tensor(valid)
        optimiser = torch.optim.Adam([self.weight, self.bias], lr=0.02, weight_decay=1e-3)
        with deterministic_torch():
            for _ in range(self.steps):
                rows = torch.randint(len(x), (min(self.batch, len(x)),), generator=self.generator)
                logits = self.logits(x[rows], q[rows]).masked_fill(~mask[q[rows]], -1e9)
                loss = torch.nn.functional.cross_entropy(logits, y[rows])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        return self

    @torch.no_grad()
    def predict_logits(self, features: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return self.logits(torch.tensor(features, dtype=torch.float32), torch.tensor(questions)).double().numpy()


@register_method
class CollaborativeFiltering(Method):
    """CF persona vector -> per-question softmax classifier -> option."""

    name = "cf"
    kind = "reference"
    description = "collaborative-filtering persona vector + per-question classifier (no LLM)"
    protocols = ("answers", "cross-wave")  # needs train answers to the scored question
    uses_persona = True

    def prepare(self, context: RunContext) -> None:
        space = context.personas
        answers = context.train_answers()
        questions = list(context.survey.questions.values())
        self.question_index = pd.Index([q.key for q in questions])
        width = max(len(q.options) for q in questions)
        self.valid = np.arange(width)[None, :] < np.array([len(q.options) for q in questions])[:, None]
        vectors = space.vectors
        self.mean, self.scale = vectors.mean(axis=0), vectors.std(axis=0) + 1e-8
        features = (vectors[space.people.get_indexer(answers["respondent"])] - self.mean) / self.scale
        self.classifier = OptionClassifier(len(questions), width, vectors.shape[1], context.seed).fit(
            features,
            self.question_index.get_indexer(answers["question"]),
            answers["option"].to_numpy(dtype=np.int64),
            self.valid,
        )

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        features = (context.persona_vectors(docs["respondent"]) - self.mean) / self.scale
        questions = self.question_index.get_indexer(docs["question"])
        logits = self.classifier.predict_logits(features, questions)
        return np.where(self.valid[questions], logits, -np.inf)
