"""One run = (data, split, method, model, persona kind, users, K) -> scored docs -> results.json.

Artifacts live in ``RUNS_DIR/<run-id>/``: ``config.json``, ``samples.jsonl.gz`` (per-doc
scores; they contain real people's answers, so they stay in the run folder) and
``results.json`` (aggregates only). The split and the CF persona space are shared by every run
on the same data and seed under ``RUNS_DIR/_shared/``. Every write is atomic; a finished run is
not recomputed (``force`` to redo it), and an interrupted one starts again from its config.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import __version__
from .atomic import atomic_write_json, atomic_writer
from .errors import ConfigError
from .evaluation import evaluate_records, task_records
from .loaders import load_survey
from .method import Method, build_options, get_method
from .metrics import macro_score
from .personas import PersonaKind, PersonaSpace, fit_personas, persona_vectors
from .protocol import USERS, Split, SplitConfig, make_split, scored_docs
from .survey import Survey

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; its hash is the run id."""

    method: str
    model: str | None = None
    data: str = "demo"
    waves: tuple[str, ...] = ()
    persona: str = "individual"
    users: str = "seen"
    k: int | None = None
    max_eval_people: int | None = None
    seed: int = 0
    people_train: float = 0.8
    answers_train: float = 0.8
    cf_solver: str = "als"
    cf_dim: int = 16
    dtype: str = "auto"
    method_options: dict = field(default_factory=dict)

    def resolved(self) -> "RunConfig":
        """Validated copy with the defaults filled in (model only for methods that use one)."""
        method = get_method(self.method)
        build_options(method, self.method_options)
        PersonaKind.parse(self.persona)
        if self.users not in USERS:
            raise ConfigError(f"--users {self.users!r}: expected one of {', '.join(USERS)}")
        if self.users == "unseen" and (self.k is None or self.k < 1):
            raise ConfigError("--users unseen needs --k N (answers folded in per person, N >= 1)")
        if self.users == "seen" and self.k is not None:
            raise ConfigError("--k applies to --users unseen only")
        if self.max_eval_people is not None and self.max_eval_people < 1:
            raise ConfigError("--max-eval-people must be at least 1")
        SplitConfig(self.seed, self.people_train, self.answers_train)
        model = (self.model or DEFAULT_MODEL) if method.needs_model else None
        persona = self.persona if method.uses_persona else "individual"
        dtype = self.dtype if method.needs_model else "auto"
        return replace(self, model=model, persona=persona, dtype=dtype, waves=tuple(self.waves))

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "waves": list(self.waves)}

    def run_id(self) -> str:
        """``<method>-<model>-<hash>``: readable, and unique per configuration."""
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        model = (self.model or "nollm").replace("/", "_")
        return f"{self.method}-{model}-{digest}"

    def split_key(self) -> str:
        """Identity of the shared split (data, waves, seed, shares)."""
        parts = [self.data, ",".join(self.waves), self.seed, self.people_train, self.answers_train]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


class RunContext:
    """What a method may use: the survey, the split, shared personas and the run folder."""

    def __init__(
        self, config: RunConfig, survey: Survey, split: Split, run_dir: Path, shared_dir: Path,
        device: str = "auto", log: Callable[[str], None] = print,
    ):
        self.config, self.survey, self.split = config, survey, split
        self.run_dir, self.shared_dir, self.device, self.log = run_dir, shared_dir, device, log
        self.persona_kind = PersonaKind.parse(config.persona)

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
        return evaluate_records(records, task, lm, self.run_dir / "docs.jsonl", chat_template)

    @cached_property
    def personas(self) -> PersonaSpace:
        """CF fitted on the train split, shared across runs (fitted once, then loaded)."""
        folder = self.shared_dir / f"personas-{self.config.cf_solver}-d{self.config.cf_dim}"
        if (folder / "personas.json").is_file():
            return PersonaSpace.load(folder, self.survey)
        space = fit_personas(self.survey, self.split, self.config.cf_solver, self.config.cf_dim, self.seed)
        space.save(folder)
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


def shared_split(config: RunConfig, survey: Survey, shared_dir: Path) -> Split:
    """The split for this data and seed: loaded when saved, else made and saved."""
    if (shared_dir / "split.json").is_file():
        return Split.load(shared_dir, survey)
    split = make_split(survey, SplitConfig(config.seed, config.people_train, config.answers_train))
    split.save(shared_dir)
    return split


def write_samples(path: Path, docs: pd.DataFrame, scores: np.ndarray, predictions: np.ndarray) -> None:
    """Per-doc scores as gzipped JSON lines (written atomically)."""
    buffer = io.StringIO()
    for doc, row, prediction in zip(docs.itertuples(index=False), scores, predictions):
        record = {
            "doc_id": doc.doc_id,
            "respondent": doc.respondent,
            "question": doc.question,
            "target": int(doc.target),
            "prediction": int(prediction),
            "correct": bool(prediction == doc.target),
            "scores": [round(float(s), 6) for s in row[: doc.n_options]],
        }
        buffer.write(json.dumps(record) + "\n")
    with atomic_writer(path, binary=True) as handle:
        handle.write(gzip.compress(buffer.getvalue().encode(), mtime=0))


def read_samples(run_dir: Path) -> pd.DataFrame:
    """A finished run's per-doc samples."""
    with gzip.open(run_dir / "samples.jsonl.gz", "rt") as handle:
        return pd.DataFrame([json.loads(line) for line in handle])


def check_scores(method: Method, scores: np.ndarray, docs: pd.DataFrame) -> np.ndarray:
    """Validate a method's option scores and return its predictions."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or len(scores) != len(docs):
        raise ConfigError(f"method {method.name!r} returned scores of shape {scores.shape} for {len(docs)} docs")
    valid = np.arange(scores.shape[1])[None, :] < docs["n_options"].to_numpy()[:, None]
    if np.isnan(scores).any() or not np.isfinite(np.where(valid, scores, 0.0)).all():
        raise ConfigError(f"method {method.name!r} returned NaN or infinite scores for real options")
    return np.where(valid, scores, -np.inf).argmax(axis=1)


def prepared_method(
    config: RunConfig, runs_dir: Path, log: Callable[[str], None] = print, device: str = "auto"
) -> tuple[Method, RunContext]:
    """Load the data and split, then build and prepare (train) the configured method."""
    run_dir = runs_dir / config.run_id()
    survey = load_survey(config.data, list(config.waves) or None)
    shared_dir = runs_dir / "_shared" / config.split_key()
    split = shared_split(config, survey, shared_dir)
    method_class = get_method(config.method)
    method = method_class(build_options(method_class, config.method_options))
    context = RunContext(config, survey, split, run_dir, shared_dir, device, log)
    log(f"{config.method}: preparing on {len(split.train_answers())} train answers")
    method.prepare(context)
    return method, context


def run(
    config: RunConfig, runs_dir: Path, force: bool = False, log: Callable[[str], None] = print, device: str = "auto"
) -> dict:
    """Run (or reuse) one configuration and return its results record (``device`` does not change it)."""
    config = config.resolved()
    run_dir = runs_dir / config.run_id()
    results_path = run_dir / "results.json"
    if results_path.is_file() and not force:
        log(f"reusing finished run {run_dir}")
        return json.loads(results_path.read_text())
    started = time.perf_counter()
    atomic_write_json(run_dir / "config.json", config.as_dict())
    method, context = prepared_method(config, runs_dir, log, device)
    docs = scored_docs(context.survey, context.split, config.users, config.max_eval_people, config.seed)
    log(f"{config.method}: scoring {len(docs)} docs of {docs['respondent'].nunique()} people")
    scores = method.score(docs.drop(columns="target"), context)
    predictions = check_scores(method, scores, docs)
    score = macro_score(docs["respondent"], predictions == docs["target"].to_numpy(), seed=config.seed)
    write_samples(run_dir / "samples.jsonl.gz", docs, np.asarray(scores, dtype=float), predictions)
    results = {
        "run_id": config.run_id(),
        **{k: v for k, v in config.as_dict().items() if k != "method_options"},
        "method_options": config.method_options,
        **score.as_dict(),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "persona_bench_version": __version__,
    }
    atomic_write_json(results_path, results)
    return results
