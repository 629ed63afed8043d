"""One conformance suite for every registered method (like scikit-learn's check_estimator).

Each method, on the demo survey (and a tiny model where it steers one), must: train only on the
train split, give a finite score to every option of every doc, be deterministic under a seed,
predict only real options (never "Refused"), and - where it uses personas - give two people
with different personas their own scores on the same question.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from persona_bench.harness.method import build_options, load_methods
from persona_bench.harness.protocol import scored_docs
from persona_bench.harness.runner import RunConfig, RunContext, check_scores
from persona_bench.harness.survey import Survey

METHODS = sorted(load_methods())
MAX_DOCS_PEOPLE = 40


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


def context_for(name: str, survey: Survey, split, shared_dir, tiny_model_path, **overrides) -> RunContext:
    methods = load_methods()
    model = str(tiny_model_path) if methods[name].needs_model else None
    config = replace(RunConfig(method=name, model=model, data="demo:600", **overrides).resolved())
    return RunContext(config, survey, split, shared_dir / "run", shared_dir)


def assert_same_scores(first: np.ndarray, second: np.ndarray) -> None:
    """Equal up to float32 round-off (BLAS kernels may differ in the last bit between calls)."""
    np.testing.assert_array_equal(first.argmax(axis=1), second.argmax(axis=1))
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)


def prepared_scores(name, context, docs):
    method = load_methods()[name]
    instance = method(build_options(method, method.quick_options))
    instance.prepare(context)
    return instance.score(docs.drop(columns="target"), context)


@pytest.fixture(scope="module")
def docs(demo_survey, demo_split):
    return scored_docs(demo_survey, demo_split, "seen", max_people=MAX_DOCS_PEOPLE, seed=0)


@pytest.mark.parametrize("name", METHODS)
def test_scores_every_real_option_and_is_deterministic(name, demo_survey, demo_split, docs, shared, tiny_model_path):
    context = context_for(name, demo_survey, demo_split, shared, tiny_model_path)
    first = prepared_scores(name, context, docs)
    predictions = check_scores(load_methods()[name], first, docs)
    assert (predictions < docs["n_options"].to_numpy()).all()
    second = prepared_scores(name, context_for(name, demo_survey, demo_split, shared, tiny_model_path), docs)
    assert_same_scores(first, second)


@pytest.mark.parametrize("name", METHODS)
def test_trains_only_on_the_train_split(name, demo_survey, demo_split, docs, shared, tiny_model_path):
    honest = prepared_scores(name, context_for(name, demo_survey, demo_split, shared, tiny_model_path), docs)
    train = demo_split.train_answers()
    keys = set(zip(train["respondent"], train["question"]))
    responses = demo_survey.responses.copy()
    outside = ~np.array([k in keys for k in zip(responses["respondent"], responses["question"])])
    sizes = responses["question"].map({k: len(q.options) for k, q in demo_survey.questions.items()})
    responses.loc[outside, "option"] = ((responses.loc[outside, "option"] + 1) % sizes[outside]).astype(np.int16)
    tampered = Survey(demo_survey.name, demo_survey.questions, demo_survey.traits, demo_survey.respondents, responses)
    leaked = prepared_scores(name, context_for(name, tampered, demo_split, shared / "tampered", tiny_model_path), docs)
    assert_same_scores(honest, leaked)


@pytest.mark.parametrize("name", [m for m in METHODS if load_methods()[m].uses_persona])
def test_different_personas_get_their_own_scores(name, demo_survey, demo_split, docs, shared, tiny_model_path):
    context = context_for(name, demo_survey, demo_split, shared, tiny_model_path)
    scores = prepared_scores(name, context, docs)
    question = docs["question"].value_counts().index[0]
    rows = np.flatnonzero(docs["question"].to_numpy() == question)
    vectors = context.persona_vectors(docs["respondent"].iloc[rows])
    distinct = [i for i in range(1, len(rows)) if not np.allclose(vectors[i], vectors[0])]
    assert distinct, "need two people with different personas on one question"
    assert any(not np.allclose(scores[rows[0]], scores[rows[i]]) for i in distinct)
