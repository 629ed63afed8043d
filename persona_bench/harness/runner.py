"""The library's pipeline: one run = (data, split, method, model, persona kind, users, K) ->
scored docs -> results.json, through :func:`evaluate` (what ``persona-bench run``, sweeps, the
executors, the benchmarks and the tests call); :func:`build_context` is the one place a
:class:`~persona_bench.harness.method.context.RunContext` is made.

Artifacts live in ``RUNS_DIR/<run-id>/`` (see :mod:`persona_bench.harness.runs.store`); the split,
the CF persona space and trained steering modules are shared by every run on the same data and
seed under ``RUNS_DIR/_shared/``. A finished run is not recomputed (``force`` to redo it), and
an interrupted one starts again from its config, reusing what was saved (checkpoints, scores).

Under a data-parallel launch (torchrun, accelerate launch) every rank runs this, training and
scoring its share; rank 0 alone writes the run folder and returns results to the others.
Everything that can be checked without the data (arguments, the method's options, the model's
availability) is checked before any data is loaded.
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..version import __version__
from .core.distributed import World
from .core.errors import ConfigError
from .data.identity import data_identity
from .data.loaders import load_survey
from .data.protocol import Split, make_split, scored_docs, survey_for
from .data.survey import Survey
from .method.base import Method, build_options, get_method, resolve_config
from .method.context import RunContext
from .metrics.groups import alignment, disparity, option_distributions, population_distributions, weighted_macro_accuracy
from .metrics.registry import metric_summaries, per_person_metrics, registered_metrics
from .personas.kind import PersonaKind
from .runs.clock import RunClock
from .runs.config import RunConfig
from .runs.record import SCHEMA_VERSION, TRAINING_FIELDS, MethodInfo, MetricValue, RunRecord, Training
from .runs.store import (
    CONFIG, RESULTS, SHARED, claim_or_wait, pseudonyms_for, read_results, read_samples, release, run_folder, shared_folder, write_config,
    write_person_metrics,
    write_results, write_samples,
)
from .scoring.evaluation import padded_scores
from .scoring.models import check_available
from .scoring.option_order import merged_scores, ordered_docs, position_shares

# The no-LLM references a run is read beside, per protocol (under heldout-questions no train answer
# to a scored question exists, so a text-based reference replaces majority and cf).
REFERENCES_BY_PROTOCOL = {"answers": ("majority", "cf", "letter-prior"), "heldout-questions": ("question-knn", "letter-prior"),
                          "cross-wave": ("majority", "cf", "demographic-majority", "letter-prior")}
REFERENCES = tuple(dict.fromkeys(name for names in REFERENCES_BY_PROTOCOL.values() for name in names))


def progress(message: str) -> None:
    """The default logger: a line on stderr (stdout stays the caller's)."""
    print(message, file=sys.stderr)


def shared_split(config: RunConfig, survey: Survey, folder: Path, world: World) -> Split:
    """The split for this data and seed: loaded when saved, else made (and saved by rank 0)."""
    names = pseudonyms_for(config.pseudonymize, folder.parent.parent)
    if (folder / "split.json").is_file():
        return Split.load(folder, survey, names)
    split = make_split(survey, config.split_config())
    if world.is_main:
        split.save(folder, names)
    return split


def checked_scores(method: Method, scores: np.ndarray, docs) -> np.ndarray:
    """A method's option scores, validated, with ``-inf`` past each question's last option."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or len(scores) != len(docs):
        raise ConfigError(f"method {method.name!r} returned scores of shape {scores.shape} for {len(docs)} docs")
    valid = np.arange(scores.shape[1])[None, :] < docs["n_options"].to_numpy()[:, None]
    if np.isnan(scores).any() or not np.isfinite(np.where(valid, scores, 0.0)).all():
        raise ConfigError(f"method {method.name!r} returned NaN or infinite scores for real options")
    return np.where(valid, scores, -np.inf)


def checked(config: RunConfig) -> RunConfig:
    """``config`` resolved, with every check that needs no data done (the model must be available)."""
    config = resolve_config(config)
    if config.model is not None:
        check_available(config.model)
    return config


def check_against(survey: Survey, config: RunConfig) -> None:
    """The checks that need the data, done before any work: the persona's traits exist."""
    missing = [trait for trait in PersonaKind.parse(config.persona).traits if trait not in survey.traits]
    if missing:
        raise ConfigError(f"--persona {config.persona}: unknown trait(s) {', '.join(missing)} in {config.data} (known: {', '.join(survey.traits)})")


def prepared_method(
    config: RunConfig, runs_dir: Path, log: Callable[[str], None] = progress, device: str = "auto", device_map: str | None = None
) -> tuple[Method, RunContext]:
    """Load the data and split, then build and prepare (train) the configured method."""
    method, context = method_in_context(config, runs_dir, log, device, device_map)
    context.log(f"{config.method}: preparing on {len(context.split.train_answers())} train answers")
    method.prepare(context)
    return method, context


def method_in_context(
    config: RunConfig, runs_dir: Path, log: Callable[[str], None] = progress, device: str = "auto", device_map: str | None = None
) -> tuple[Method, RunContext]:
    """The configured method, not yet prepared, and the context of its run (data and split loaded)."""
    config = checked(config)
    world = World.current()
    survey = run_survey(config)
    check_against(survey, config)
    context = build_context(config, runs_dir, survey, device=device, log=log if world.is_main else quiet, world=world, device_map=device_map)
    method_class = get_method(config.method)
    return method_class(build_options(method_class, config.method_options)), context


def run_survey(config: RunConfig) -> Survey:
    """The survey a run reads: its data, waves and protocol."""
    return survey_for(load_survey(config.data, list(config.waves) or None), config.waves, config.protocol)


def build_context(
    config: RunConfig, runs_dir: Path, survey: Survey | None = None, split: Split | None = None, *, device: str = "auto",
    log: Callable[[str], None] = progress, world: World | None = None, device_map: str | None = None,
) -> RunContext:
    """The context of ``config``'s run in ``runs_dir`` (its folder ``runs_dir/<run id>``, its shared
    folder ``runs_dir/_shared/<split key>``), with ``survey`` and ``split`` (default: the run's
    data loaded, and its split loaded or made). The one place a RunContext is built."""
    world = world or World.current()
    survey = run_survey(config) if survey is None else survey
    folder = shared_folder(runs_dir, config)
    split = shared_split(config, survey, folder, world) if split is None else split
    return RunContext(config, survey, split, run_folder(runs_dir, config), folder, device, log, world, device_map)


def audit_finished_run(
    run_dir: Path, log: Callable[[str], None] = progress, device: str = "auto", max_train_answers: int | None = None
) -> dict:
    """The membership audit of a finished steering run's module (:mod:`persona_bench.harness.training.audit`),
    added to the run's results record, which is returned. For an untrained control (which has no
    budget of its own) the members are the people a training of ``max_train_answers`` answers
    (the budget of the trained run it controls; default: every train answer) would train on."""
    from .training.learned import LearnedSteering

    run_dir = Path(run_dir)
    record = read_results(run_dir)
    if record is None:
        raise ConfigError(f"{run_dir}: no finished run here (no results.json)")
    try:
        saved = json.loads((run_dir / CONFIG).read_text())
        config = checked(RunConfig.from_dict(saved))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{run_dir / CONFIG}: not a run configuration ({type(exc).__name__}: {exc})") from None
    method, context = method_in_context(config, run_dir.parent, log, device)
    if not isinstance(method, LearnedSteering):
        raise ConfigError(f"{run_dir}: a {config.method} run; only a steering run's module was trained on people")
    if max_train_answers is not None:
        if method.options.weights != "random":
            raise ConfigError(f"{run_dir}: --max-train-answers is for an untrained control; this run's module trained on its own budget")
        method = type(method)(replace(method.options, max_train_answers=max_train_answers))
    if method.options.weights == "trained" and not (method.checkpoint_folder(context) / "training.json").is_file():
        raise ConfigError(f"{run_dir}: its trained module is not in {method.checkpoint_folder(context)} "
                          "(audit a run in the runs folder it was made in)")
    method.prepare(context)
    audit = method.membership or method.membership_audit(context)
    updated = record.with_fields(training=replace(record.training or Training(), membership_audit=audit))
    write_results(run_dir, updated)
    return updated


def evaluate(
    config: RunConfig, runs_dir: Path, force: bool = False, log: Callable[[str], None] = progress, device: str = "auto",
    device_map: str | None = None, preset: str | None = None,
) -> RunRecord:
    """Run (or reuse) one configuration and return its results record (``device`` and ``device_map``
    do not change it; ``preset``, the name of the preset the config was made under, is written in a
    new record but is not part of the run's identity): once across the processes sharing ``runs_dir``. While another process is
    doing the same run, this one waits and then reuses its result (``force``: reruns it after)."""
    config = checked(config)
    world = World.current()
    run_dir = run_folder(runs_dir, config)
    if world.distributed:  # the ranks of one launch do the run together
        return evaluate_here(config, runs_dir, force, log, device, device_map, preset)
    if not claim_or_wait(run_dir, lambda: read_results(run_dir) is not None and not force, log):
        return evaluate_here(config, runs_dir, False, log, device, device_map, preset)  # done by another process: reused
    try:
        return evaluate_here(config, runs_dir, force, log, device, device_map, preset)
    finally:
        release(run_dir)


def evaluate_here(
    config: RunConfig, runs_dir: Path, force: bool = False, log: Callable[[str], None] = progress, device: str = "auto",
    device_map: str | None = None, preset: str | None = None,
) -> RunRecord:
    """:func:`evaluate` in this process, whoever else is doing it (callers hold the run's claim)."""
    config = checked(config)
    world = World.current()
    log = log if world.is_main else quiet
    run_dir = run_folder(runs_dir, config)
    finished = read_results(run_dir)
    if finished is not None and not force:
        log(f"reusing finished run {run_dir}")
        return refreshed(config, runs_dir, finished, log) if finished.outdated and world.is_main else finished
    if world.is_main:
        if not (Path(runs_dir) / SHARED).exists() and not config.data.startswith("demo"):  # no run has prepared here yet
            log(f"note: {runs_dir} will hold real respondents' answers (each run's docs.jsonl and samples.jsonl.gz): keep it private "
                "and publish the leaderboard (aggregates only); --pseudonymize replaces respondent ids with salted hashes")
        write_config(run_dir, config.as_dict())
    record = None  # the main process keeps the run's wall time over its attempts
    with RunClock(run_dir, finished=run_dir / RESULTS) if world.is_main else contextlib.nullcontext() as clock:
        method, context = prepared_method(config, runs_dir, log, device, device_map)
        docs = scored_docs(context._survey, context.split, config.users, config.max_eval_people, config.seed)  # targets: the harness's own
        shown = ordered_docs(docs, config.option_order)  # one copy per rotation under cyclic order
        log(f"{config.method}: scoring {len(docs)} docs of {docs['respondent'].nunique()} people"
            + (f" ({len(shown)} with every rotation of their options)" if len(shown) != len(docs) else "")
            + (f" on {world.size} processes" if world.distributed else ""))
        scores = method.score(shown.drop(columns=["target", "source"]), context)
        if world.is_main:
            scores = checked_scores(method, scores, shown)
            answer_positions = position_shares(shown, scores, shown["target"].to_numpy())
            scores = merged_scores(shown, scores, method.scores_are, len(docs))
            predictions = scores.argmax(axis=1)
            names = pseudonyms_for(config.pseudonymize, runs_dir)
            write_samples(run_dir, docs, scores, predictions, names)
            per_person, accuracy, metrics = person_metrics(docs, scores, context._survey, method.scores_are, config.seed)
            write_person_metrics(run_dir, per_person, names)
            report = method.report()
            record = RunRecord(
                run_id=run_dir.name, config=config, method_info=MethodInfo(**{**method.describe(), "protocols": tuple(method.protocols)}),
                accuracy=accuracy.value, ci95=accuracy.ci95, n_people=len(per_person), n_answers=len(docs),
                options=asdict(method.options),
                variant={k: v for k, v in config.method_options.items() if k not in method.budget_options},
                training=Training(**{k: report.pop(k) for k in TRAINING_FIELDS if k in report}) if "budget" in report else None,
                preset=preset, data_identity=data_identity(config.data, config.waves), report=report, metrics=metrics,
                answer_positions=answer_positions,
                **group_figures(docs, scores, per_person["accuracy"], context._survey, context.train_answers(), config.seed, method.scores_are),
                wall_seconds=round(clock.stop(), 2), processes=world.size,
                finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), persona_bench_version=__version__,
            )
            write_results(run_dir, record)
            clock.remove()
    return world.broadcast(record)


def option_values(docs, survey: Survey) -> np.ndarray:
    """(docs, widest question) each doc's options' ordinal values in [0, 1], NaN past its last option
    and for a nominal question (every option at one ordinal position: no scale to measure on)."""
    values = np.full((len(docs), max(len(q.options) for q in survey.questions.values())), np.nan)
    for row, key in enumerate(docs["question"]):
        if not survey.questions[key].nominal:
            option = survey.option_values(key)
            values[row, : len(option)] = option
    return values


def person_metrics(docs, scores: np.ndarray, survey: Survey, scores_are: str, seed: int
                   ) -> tuple[pd.DataFrame, MetricValue, dict[str, MetricValue]]:
    """Every registered metric for each person of ``docs`` (respondent, question, target rows of
    ``scores``), and their means over people with CIs: (per person, accuracy, the other metrics)."""
    metrics = registered_metrics()
    per_person = per_person_metrics(docs["respondent"].to_numpy(), scores, option_distributions(scores, scores_are, add_one=True),
                                    docs["target"].to_numpy(), option_values(docs, survey), survey.respondents["weight"], metrics)
    summaries = {name: MetricValue(s["value"], tuple(s["ci95"]), s["higher_is_better"])
                 for name, s in metric_summaries(per_person, seed=seed, metrics=metrics).items()}
    return per_person, summaries.pop("accuracy"), summaries


def group_figures(docs, scores: np.ndarray, accuracy: pd.Series, survey: Survey, train_answers, seed: int, scores_are: str) -> dict:
    """The group level of the same scores (:mod:`persona_bench.harness.metrics.groups`) from the option
    scores and each person's accuracy (the registered metric): aggregates only; the group
    alignment again on each named question subset the data defines (e.g. disagreement)."""
    distributions = option_distributions(scores, scores_are)
    population = population_distributions(train_answers, survey)
    subsets = {name: docs["question"].isin(keys).to_numpy() for name, keys in survey.question_sets.items()}
    return {
        "weighted_accuracy": weighted_macro_accuracy(accuracy, survey),
        "groups": alignment(docs, distributions, survey, population, seed=seed),
        "question_sets": {name: alignment(docs[kept], distributions[kept], survey, population, seed=seed)
                          for name, kept in subsets.items() if kept.any()},
        "disparity": disparity(accuracy, survey, seed=seed),
    }


def refreshed(config: RunConfig, runs_dir: Path, finished: RunRecord, log: Callable[[str], None]) -> RunRecord:
    """A run finished by an older persona-bench gets, from its stored samples (no scoring), what a
    run records now: the group figures, every registered metric as defined now, and the answer
    positions; rewritten in the current layout."""
    if config.pseudonymize:
        return finished  # its samples no longer name the people whose traits and weights they need
    log(f"{config.method}: bringing the finished run's figures up to date from its samples")
    context = build_context(config, runs_dir)
    survey = context._survey
    run_dir = run_folder(runs_dir, config)
    samples = read_samples(run_dir)
    scores = padded_scores(list(samples["scores"]))
    samples["n_options"] = np.isfinite(scores).sum(axis=1)
    per_person, _, metrics = person_metrics(samples, scores, survey, finished.method_info.scores_are, config.seed)
    updated = finished.with_fields(
        metrics=metrics,
        # samples hold one merged row per doc: under cyclic order the per-rotation argmax is gone, so the record's own stays
        answer_positions=(finished.answer_positions if config.option_order == "cyclic"
                          else position_shares(ordered_docs(samples, config.option_order), scores, samples["target"].to_numpy())),
        schema_version=SCHEMA_VERSION,
        **group_figures(samples, scores, per_person["accuracy"], survey, context.train_answers(), config.seed,
                        finished.method_info.scores_are),
    )
    write_person_metrics(run_dir, per_person, pseudonyms_for(config.pseudonymize, runs_dir))
    write_results(run_dir, updated)
    return updated


def companions(config: RunConfig) -> dict[str, RunConfig]:
    """The runs a result is read beside: the no-LLM references (majority, cf); for a method that
    uses a language model, the same model unsteered (``raw``); for a trained method (steering or
    fine-tuning), its untrained control (``weights=random``, same variant and initialisation, no training budget)."""
    method = get_method(config.method)
    found = {
        name: resolve_config(replace(config, method=name, model=None, dtype="auto", method_options={}))
        for name in REFERENCES_BY_PROTOCOL[config.protocol] if name != config.method
    }
    if method.needs_model and config.method != "raw":
        found["raw (unsteered LM)"] = resolve_config(replace(config, method="raw", method_options={}))
    from .training.learned import LearnedSteering

    if issubclass(method, LearnedSteering) and config.method_options.get("weights", "trained") != "random":
        identity = {k: v for k, v in config.method_options.items() if k not in method.budget_options or k in method.untrained_options}
        found[f"{config.method} untrained"] = resolve_config(replace(config, method_options={**identity, "weights": "random"}))
    return found


def quiet(message: str) -> None:
    """A logger for ranks other than 0."""
