"""The conformance checks every method must pass (like scikit-learn's ``check_estimator``).

:func:`check_method` prepares and scores a method on a survey and a split (and a model, for
methods that use one) and raises :class:`ConformanceError` when it

* does not give a finite score to every real option of every doc;
* is not deterministic under a seed: two runs in *separate* folders, with separate score and
  embedding caches and separate checkpoints, must score alike (nothing is reused between them);
* learns from anything but the train split: every answer outside the train people's train
  part is changed, and the scores must not move (a method that reads held-out answers in
  ``prepare`` or ``score`` is caught, by the context refusing it or by its scores moving);
* uses personas but gives two people with different personas the same scores on a question.

The default test suite runs it on every registered method; a plugin's own tests can call it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .core.errors import HeldOutAnswerError
from .data.protocol import Split, scored_docs
from .data.survey import Survey
from .method.base import build_options, get_method, resolve_config
from .runner import build_context
from .runs.config import RunConfig


class ConformanceError(AssertionError):
    """A method broke the contract; the message says how."""


@contextmanager
def isolated_cache(folder: Path) -> Iterator[None]:
    """Point persona-bench's score, embedding and model caches at ``folder`` while inside
    (converted models are linked from the current cache, so nothing is reconverted)."""
    previous = os.environ.get("PERSONA_BENCH_CACHE")
    folder.mkdir(parents=True, exist_ok=True)
    models = Path(previous or Path.home() / ".cache" / "persona-bench") / "models"
    if models.is_dir() and not (folder / "models").exists():
        (folder / "models").symlink_to(models, target_is_directory=True)
    os.environ["PERSONA_BENCH_CACHE"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PERSONA_BENCH_CACHE", None)
        else:
            os.environ["PERSONA_BENCH_CACHE"] = previous


def scores_of(name: str, options: dict, survey: Survey, split: Split, docs: pd.DataFrame, folder: Path, model: str | None) -> np.ndarray:
    """Prepare ``name`` in a fresh ``folder`` (run, shared and cache folders of its own) and score ``docs``."""
    config = resolve_config(RunConfig(method=name, model=model, data=f"conformance:{survey.name}", method_options=options))
    context = build_context(config, folder, survey, split, device="cpu", log=lambda message: None)
    method_class = get_method(name)
    with isolated_cache(folder / "cache"):
        method = method_class(build_options(method_class, options))
        try:
            method.prepare(context)
            scores = method.score(docs.drop(columns="target"), context)
        except HeldOutAnswerError as exc:  # the context refused it: the same verdict as the tampered-answers check
            raise ConformanceError(f"{name}: reads held-out answers ({exc})") from None
    return np.asarray(scores, dtype=float)


def check_scores(name: str, scores: np.ndarray, docs: pd.DataFrame) -> None:
    """One finite score per real option of every doc."""
    if scores.ndim != 2 or len(scores) != len(docs):
        raise ConformanceError(f"{name}: scores of shape {scores.shape} for {len(docs)} docs")
    valid = np.arange(scores.shape[1])[None, :] < docs["n_options"].to_numpy()[:, None]
    if not np.isfinite(scores[valid]).all():
        raise ConformanceError(f"{name}: NaN or infinite scores for real options")
    if (np.where(valid, scores, -np.inf).argmax(axis=1) >= docs["n_options"].to_numpy()).any():
        raise ConformanceError(f"{name}: predicts an option the question does not have")


def same_scores(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal up to float32 round-off (BLAS kernels may differ in the last bit between calls)."""
    finite = np.isfinite(first)
    return (
        first.shape == second.shape and (finite == np.isfinite(second)).all()
        and (first.argmax(axis=1) == second.argmax(axis=1)).all() and np.allclose(first[finite], second[finite], rtol=1e-5, atol=1e-6)
    )


def tampered(survey: Survey, split: Split) -> Survey:
    """The survey with every answer outside the train people's train part moved to another option."""
    train = split.train_answers()
    keys = set(zip(train["respondent"], train["question"]))
    responses = survey.responses.copy()
    outside = ~np.array([k in keys for k in zip(responses["respondent"], responses["question"])])
    sizes = responses["question"].map({k: len(q.options) for k, q in survey.questions.items()})
    responses.loc[outside, "option"] = ((responses.loc[outside, "option"] + 1) % sizes[outside]).astype(responses["option"].dtype)
    return Survey(survey.name, survey.questions, survey.traits, survey.respondents, responses)


def check_method(
    name: str, survey: Survey, split: Split, workdir: Path, model: str | None = None,
    options: dict | None = None, max_people: int = 40,
) -> None:
    """Run every check of the module docstring on method ``name`` (``options`` default to its
    ``quick_options``); raise :class:`ConformanceError` on the first broken rule."""
    method = get_method(name)
    options = dict(method.quick_options if options is None else options)
    model = model if method.needs_model else None
    docs = scored_docs(survey, split, "seen", max_people=max_people, seed=0)
    first = scores_of(name, options, survey, split, docs, workdir / "first", model)
    check_scores(name, first, docs)
    second = scores_of(name, options, survey, split, docs, workdir / "second", model)
    if not same_scores(first, second):
        raise ConformanceError(f"{name}: two runs with the same seed in separate folders score differently")
    leaked = scores_of(name, options, tampered(survey, split), split, docs, workdir / "tampered", model)
    if not same_scores(first, leaked):
        raise ConformanceError(f"{name}: scores change when answers outside the train split change (it reads held-out answers)")
    if method.uses_persona:
        check_personas_matter(name, options, survey, split, docs, first, workdir / "first", model)


def check_personas_matter(
    name: str, options: dict, survey: Survey, split: Split, docs: pd.DataFrame, scores: np.ndarray, folder: Path, model: str | None
) -> None:
    """Two people with different personas on the same question get their own scores."""
    config = resolve_config(RunConfig(method=name, model=model, data=f"conformance:{survey.name}", method_options=options))
    context = build_context(config, folder, survey, split, device="cpu", log=lambda message: None)
    question = docs["question"].value_counts().index[0]
    rows = np.flatnonzero(docs["question"].to_numpy() == question)
    vectors = context.persona_vectors(docs["respondent"].iloc[rows])
    distinct = [i for i in range(1, len(rows)) if not np.allclose(vectors[i], vectors[0])]
    if not distinct:
        raise ConformanceError(f"{name}: the check needs two people with different personas on one question")
    if all(np.allclose(scores[rows[0]], scores[rows[i]]) for i in distinct):
        raise ConformanceError(f"{name}: uses personas but people with different personas get the same scores")
