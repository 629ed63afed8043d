"""One conformance suite for every registered method (persona_bench.harness.conformance), and
proof that it can fail: a method that reads held-out answers, a nondeterministic one and one
that ignores its personas are each caught."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from persona_bench.harness.conformance import ConformanceError, check_method
from persona_bench.harness.method.base import METHODS, Method, load_methods, register_method

BUILT_IN = sorted(load_methods())


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_registered_method_conforms(name, demo_survey, demo_split, tiny_model_path, tmp_path):
    check_method(name, demo_survey, demo_split, tmp_path, model=str(tiny_model_path))


def uniform(docs) -> np.ndarray:
    scores = np.full((len(docs), int(docs["n_options"].max())), -np.inf)
    for i, n in enumerate(docs["n_options"]):
        scores[i, :n] = 0.0
    return scores


class Peeker(Method):
    """Memorises every answer in the survey, held-out ones included, while preparing."""

    name, kind = "test-peeker", "reference"

    def prepare(self, context):
        self.answers = context.survey.responses.set_index(["respondent", "question"])["option"]

    def score(self, docs, context):
        scores = uniform(docs)
        for i, (person, question) in enumerate(zip(docs["respondent"], docs["question"])):
            scores[i, self.answers[(person, question)]] = 1.0
        return scores


class Dice(Method):
    """Unseeded random scores."""

    name, kind = "test-dice", "reference"

    def score(self, docs, context):
        return uniform(docs) + np.random.default_rng().random((len(docs), int(docs["n_options"].max())))


class Deaf(Method):
    """Claims to use personas and ignores them."""

    name, kind, uses_persona = "test-deaf", "reference", True

    @dataclass(frozen=True)
    class Options:
        pass

    def score(self, docs, context):
        return uniform(docs)


@pytest.mark.parametrize("cheat, message", [(Peeker, "reads held-out answers"), (Dice, "score differently"), (Deaf, "same scores")])
def test_the_suite_catches_a_broken_method(cheat, message, demo_survey, demo_split, tmp_path):
    register_method(cheat)
    try:
        with pytest.raises(ConformanceError, match=message):
            check_method(cheat.name, demo_survey, demo_split, tmp_path)
    finally:
        METHODS.pop(cheat.name)
