"""RunContext: everything a method may use during one run.

The survey, the split, the shared persona space (CF fitted on the train split only), the run
and shared folders, the device, a logger, and the process group of a data-parallel launch.
Labelled training data is ``train_answers()`` alone; what the scored people revealed is
``known_answers()``. Scoring goes through :meth:`RunContext.evaluate`, which adds the targets
itself, so a method never sees the answers it is scored on.

What a method sees cannot leak: ``context.survey`` is the survey without its answer table
(questions, respondents, traits, question sets), ``with_answers`` answers only pairs that are
train or revealed answers, and the persona space holds no held-out answer; reaching for one is a
:class:`~persona_bench.harness.core.errors.HeldOutAnswerError` naming what to use instead.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ...tasks.prompts import styled
from ..core.distributed import World
from ..core.errors import ConfigError, HeldOutAnswerError
from ..data.protocol import Split
from ..data.pseudonyms import Pseudonyms
from ..data.survey import Survey
from ..personas.kind import PersonaKind
from ..personas.space import PersonaSpace, fit_personas, persona_vectors
from ..runs.config import RunConfig
from ..runs.store import pseudonyms_for
from ..scoring.evaluation import evaluate_records, task_records


class SurveyWithoutAnswers:
    """The survey as a method sees it (``context.survey``): everything but the answers."""

    VISIBLE = frozenset({"name", "questions", "traits", "respondents", "question_sets", "steering_contexts", "waves", "option_values"})

    def __init__(self, survey: Survey):
        self._survey = survey

    def __getattr__(self, name: str):
        if name.startswith("_"):  # copy, pickle and hasattr ask for these: plain AttributeError
            raise AttributeError(name)
        if name in self.VISIBLE:
            return getattr(self._survey, name)
        raise HeldOutAnswerError(
            f"a method read context.survey.{name}, which holds every answer, held-out ones included: a method learns from "
            "context.train_answers(), and the scored people's revealed answers are context.known_answers()")


class RunContext:
    """What a method may use: the survey (without answers), the split, train and revealed answers,
    shared personas and the run folder. Built by :func:`persona_bench.harness.runner.build_context`."""

    def __init__(
        self, config: RunConfig, survey: Survey, split: Split, run_dir: Path, shared_dir: Path,
        device: str = "auto", log: Callable[[str], None] = print, world: World | None = None, device_map: str | None = None,
    ):
        self.config, self.split = config, split
        self._survey, self.survey = survey, SurveyWithoutAnswers(survey)
        self.run_dir, self.shared_dir, self.device, self.log = run_dir, shared_dir, device, log
        self.device_map = device_map
        self.world = world or World.current()
        self.persona_kind = PersonaKind.parse(config.persona)

    @property
    def model_options(self) -> dict:
        """How to load the run's language model: ``LetterScoringLM(**context.model_options)``."""
        return {"pretrained": self.config.model, "device": self.device, "dtype": self.config.dtype, "device_map": self.device_map}

    @property
    def seed(self) -> int:
        """The run's seed: every random choice a method makes takes it."""
        return self.config.seed

    def with_answers(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """(respondent, question) rows joined with the chosen ``option`` and its ``value``; every
        pair must be a train answer or a revealed one (:meth:`known_answers`)."""
        visible = self.visible_pairs().drop_duplicates()
        outside = pairs[["respondent", "question"]].merge(visible, how="left", indicator=True)["_merge"] == "left_only"
        if outside.any():
            respondent, question = pairs[["respondent", "question"]].iloc[int(np.argmax(outside.to_numpy()))]
            raise HeldOutAnswerError(
                f"a method asked for the answer of {respondent!r} to {question!r}, which is neither a train answer nor one "
                f"revealed to this run ({int(outside.sum())} such pairs): held-out answers stay inside scoring")
        return self._answers_of(pairs)

    def _answers_of(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """:meth:`with_answers` unchecked: the harness's own (targets, the membership audit), never a method's."""
        return pairs.merge(self._survey.responses, on=["respondent", "question"], how="left", validate="many_to_one")

    def visible_pairs(self) -> pd.DataFrame:
        """Every (respondent, question) pair whose answer a method may see: train and revealed answers."""
        return pd.concat([self.split.train_answers(), self.revealed_pairs()])[["respondent", "question"]]

    def revealed_pairs(self) -> pd.DataFrame:
        """The scored people's revealed (respondent, question) pairs (none beyond train answers for seen users)."""
        if self.config.users == "seen":
            return self.split.train_answers().iloc[:0]
        return self.split.fold_in_answers(self.config.k)

    def train_answers(self) -> pd.DataFrame:
        """The train people's train answers with ``option`` and ``value`` (all a method learns from)."""
        return self._answers_of(self.split.train_answers())

    def known_answers(self) -> pd.DataFrame:
        """What the scored people have revealed: seen users' train answers, unseen users' K fold-in answers."""
        if self.config.users == "seen":
            return self.train_answers()
        return self._answers_of(self.revealed_pairs())

    def evaluate(self, task: str, docs: pd.DataFrame, lm, extra: list[dict] | None = None, chat_template: bool = False,
                 docs_file: str = "docs.jsonl") -> np.ndarray:
        """Score ``docs`` with lm-eval task ``task`` and model ``lm`` (targets added here, not by the
        method); ``extra`` adds or replaces fields of each doc's record; the records go to ``docs_file``
        in the run folder."""
        targets = self._answers_of(docs[["respondent", "question"]])["option"]
        records = task_records(docs, self.survey, targets, styled(extra, len(docs), self.config.prompt_texts))
        return evaluate_records(records, task, lm, self.run_dir / docs_file, chat_template, self.world, self.names)

    @cached_property
    def names(self) -> Pseudonyms:
        """What this run's files call a respondent (salted hashes with ``--pseudonymize``)."""
        return pseudonyms_for(self.config.pseudonymize, self.run_dir.parent)

    @cached_property
    def personas(self) -> PersonaSpace:
        """CF fitted on the train split, shared across runs (fitted once, then loaded); it folds in
        from train and revealed answers only (no held-out answer, and no more than K of an unseen person's)."""
        folder = self.shared_dir / f"personas-{self.config.cf_solver}-d{self.config.cf_dim}"
        if (folder / "personas.json").is_file():
            space = PersonaSpace.load(folder, self._survey, self.names)
        else:
            space = fit_personas(self._survey, self.split, self.config.cf_solver, self.config.cf_dim, self.seed)
            if self.world.is_main:
                space.save(folder, self.names)
        space.values = space.values.reindex(pd.MultiIndex.from_frame(self.visible_pairs()))
        space.fold_in_by = self.config.fold_in
        return space

    def individual_vectors(self) -> tuple[pd.Index, np.ndarray]:
        """Individual persona vectors of the scored users (unseen ones folded in from K answers)."""
        return self.personas.for_users(self.split, self.config.users, self.config.k)

    def persona_vectors(self, people: pd.Series) -> np.ndarray:
        """The run's persona vector (per ``--persona``) for each entry of ``people``."""
        index, vectors = self.individual_vectors()
        personas = persona_vectors(
            self.personas, self.persona_kind, index, vectors, self.survey.respondents, self.split, self.seed
        )
        rows = index.get_indexer(people)
        if (rows < 0).any():
            raise ConfigError(f"no persona for {people[rows < 0].iloc[0]!r} (no answers to fold in)")
        return personas[rows]
