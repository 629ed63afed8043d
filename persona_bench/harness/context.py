"""RunContext: everything a method may use during one run.

The survey, the split, the shared persona space (CF fitted on the train split only), the run
and shared folders, the device, a logger, and the process group of a data-parallel launch.
Labelled training data is ``train_answers()`` alone; what the scored people revealed is
``known_answers()``. Scoring goes through :meth:`RunContext.evaluate`, which adds the targets
itself, so a method never sees the answers it is scored on.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .config import RunConfig
from .distributed import World
from .errors import ConfigError
from .evaluation import evaluate_records, task_records
from .personas import PersonaKind, PersonaSpace, fit_personas, persona_vectors
from .protocol import Split
from .pseudonyms import Pseudonyms
from .store import pseudonyms_for
from .survey import Survey


class RunContext:
    """What a method may use: the survey, the split, shared personas and the run folder."""

    def __init__(
        self, config: RunConfig, survey: Survey, split: Split, run_dir: Path, shared_dir: Path,
        device: str = "auto", log: Callable[[str], None] = print, world: World | None = None, device_map: str | None = None,
    ):
        self.config, self.survey, self.split = config, survey, split
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
        """(respondent, question) rows joined with the chosen ``option`` and its ``value``."""
        return pairs.merge(self.survey.responses, on=["respondent", "question"], how="left", validate="one_to_one")

    def train_answers(self) -> pd.DataFrame:
        """The train people's train answers with ``option`` and ``value`` (all a method learns from)."""
        return self.with_answers(self.split.train_answers())

    def known_answers(self) -> pd.DataFrame:
        """What the scored people have revealed: seen users' train answers, unseen users' K fold-in answers."""
        if self.config.users == "seen":
            return self.train_answers()
        return self.with_answers(self.split.fold_in_answers(self.config.k))

    def evaluate(self, task: str, docs: pd.DataFrame, lm, extra: list[dict] | None = None, chat_template: bool = False) -> np.ndarray:
        """Score ``docs`` with lm-eval task ``task`` and model ``lm`` (targets added here, not by the method)."""
        targets = self.with_answers(docs[["respondent", "question"]])["option"]
        records = task_records(docs, self.survey, targets, extra)
        return evaluate_records(records, task, lm, self.run_dir / "docs.jsonl", chat_template, self.world, self.names)

    @cached_property
    def names(self) -> Pseudonyms:
        """What this run's files call a respondent (salted hashes with ``--pseudonymize``)."""
        return pseudonyms_for(self.config.pseudonymize, self.run_dir.parent)

    @cached_property
    def personas(self) -> PersonaSpace:
        """CF fitted on the train split, shared across runs (fitted once, then loaded)."""
        folder = self.shared_dir / f"personas-{self.config.cf_solver}-d{self.config.cf_dim}"
        if (folder / "personas.json").is_file():
            return PersonaSpace.load(folder, self.survey, self.names)
        space = fit_personas(self.survey, self.split, self.config.cf_solver, self.config.cf_dim, self.seed)
        if self.world.is_main:
            space.save(folder, self.names)
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
