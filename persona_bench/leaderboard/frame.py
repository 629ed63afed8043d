"""Finished runs as one DataFrame, from their RunRecords alone (no method needs to be installed;
older layouts are upgraded by :func:`persona_bench.harness.runs.record.upgrade`).

Columns: every field of the record's results.json, ``score`` and ``score_ci95`` (the metric the
leaderboard ranks by: ``accuracy`` unless ``--metric`` names another) and ``higher_is_better``.

Derived columns: ``kind``, ``uses_persona`` (from the method's self-description), ``variant``
(the options that change *what* a method is, e.g. ``k_context=3``, or a non-default CF space or
precision, ``dtype=bf16-mixed``; empty for the defaults; ``variant_options`` holds them as a dict), ``budget_label`` (how much it
trained: ``1,000 answers x 3 epochs``, empty for methods that do not train), ``train_answers`` and
``epochs`` (numbers, for learning curves), ``recipe`` (the named preset, followed by any of its
settings the run overrode, e.g. ``default, init=scaled``: two runs with one label trained alike;
``recipe_name`` and ``recipe_overrides`` hold the parts),
``waves_label`` (``W26``, ``W26+W41``; ``all`` when no waves were chosen), ``untrained_control``,
``train_seed`` (the training's seed: ``--train-seed``, else the split's ``seed``), ``redrawn``
(trained at another seed than the split's), ``requested_budget`` (the answers and epochs asked for,
which early stopping does not change: what training seeds are compared at).

``data`` is replaced by the data's short name (:func:`~persona_bench.harness.data.identity.data_name`:
the folder's name, never its path, unless ``--data-name`` gives another: :func:`display_names`), which
titles and scopes read.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..harness.core.errors import ConfigError
from ..harness.data.identity import data_identity, data_name
from ..harness.runs.config import OMITTED_AT_DEFAULT
from ..harness.scoring.models import model_name
from ..harness.runs.record import RunRecord
from ..harness.runs.store import read_person_metrics, read_samples

KIND_ORDER = ("reference", "prompting", "steering", "finetuning")


def options_label(options: dict) -> str:
    """``key=value`` pairs, sorted."""
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def method_label(method: str, variant: str) -> str:
    """``spm`` for a method's defaults, ``spm [mode=prompt, ...]`` for a variant."""
    return f"{method} [{variant}]" if variant else method


def budget_label(budget: dict | None) -> str:
    """``1,000 answers x 3 epochs`` (empty for methods that do not train)."""
    if not budget:
        return ""
    if not budget.get("train_answers"):
        return "untrained"
    return f"{budget['train_answers']:,} answers x {budget.get('epochs', 0)} epochs"


def requested_budget(record: RunRecord) -> str:
    """``10,000 answers x 1 epochs`` as the run asked (``all answers`` for 0); empty for a method that does not train."""
    if record.training is None or not record.training.train_answers:
        return ""
    answers, epochs = record.options.get("max_train_answers"), record.training.settings.get("epochs", record.options.get("epochs"))
    return f"{'all' if not answers else f'{answers:,}'} answers x {epochs} epochs"


def recipe_overrides(record: RunRecord, variant: dict) -> dict:
    """The recipe settings a run overrode: options given whose declared role is a recipe setting
    (neither what the method is, its variant, nor the size of its training or how it runs)."""
    settings = record.method_info.recipe_settings()
    return {k: v for k, v in record.config.method_options.items() if k not in variant and k in settings}


def recipe_label(name: str, overrides: dict) -> str:
    """``default`` or ``default, init=scaled`` (empty for methods without a recipe)."""
    return ", ".join(filter(None, [name, options_label(overrides)])) if name else ""


DataKey = tuple[str, "str | None", tuple[str, ...]]  # (the data's spec, its identity as recorded, the run's waves)


def shown_model(model: str | None) -> str:
    """A run's model as tables show it: its name, never a folder's path (``-`` for no LLM)."""
    return model_name(model) if model else "-"


def data_key(record: RunRecord) -> DataKey:
    """What names a run's data on the leaderboard: its spec, its identity where recorded, its waves."""
    return record.config.data, record.data_identity, tuple(record.config.waves)


def fingerprint_label(identity: str) -> str:
    """Six characters that tell one data identity from another: its fingerprint's first ones, or a hash
    of an identity that is a spec (never a piece of a path)."""
    fingerprint = identity.partition(":")[2]
    if len(fingerprint) == 16 and all(c in "0123456789abcdef" for c in fingerprint):
        return fingerprint[:6]
    return hashlib.sha256(identity.encode()).hexdigest()[:6]


def display_names(records: list[RunRecord], given: Sequence[str] = ()) -> dict[DataKey, str]:
    """Per :func:`data_key` of ``records``, the name titles show: its short name (:func:`data_name`),
    with six characters of its identity (:func:`fingerprint_label`) where runs of other data on the
    same waves share that short name (``opinionqa (3f2a9c)``), or the name ``given`` for it as
    ``SHORT=NAME`` (``NAME`` alone where the runs hold one data source). A run from before 0.9 (no
    identity recorded) counts as its data as it lies here now, or as its spec where that is gone."""
    keys = sorted({data_key(record) for record in records}, key=str)
    known = {key: key[1] or data_identity(key[0], key[2]) for key in keys}
    identities: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for key in keys:
        identities.setdefault((data_name(key[0]), key[2]), set()).add(known[key])
    names = {}
    for key in keys:
        short = data_name(key[0])
        clash = len(identities[(short, key[2])]) > 1  # other data under the same name and waves: tell them apart
        names[key] = f"{short} ({fingerprint_label(known[key])})" if clash else short
    shorts = sorted(set(names.values()))
    for item in given:
        short, name = parse_data_name(item)
        if short is None and len(shorts) != 1:
            raise ConfigError(f"--data-name {item}: the runs hold {len(shorts)} data sources ({', '.join(shorts)}): say which, "
                              f"--data-name SHORT=NAME")
        short = shorts[0] if short is None else short
        if short not in shorts:
            raise ConfigError(f"--data-name {item}: no run's data is called {short!r} (the runs hold: {', '.join(shorts)})")
        names.update({key: name for key, was in names.items() if was == short})
    return names


def parse_data_name(item: str) -> tuple[str | None, str]:
    """``--data-name [SHORT=]NAME`` as (SHORT or None, NAME); an empty NAME is one line naming the flag."""
    short, sep, name = item.rpartition("=") if "=" in item else ("", "", item)
    if not name.strip():
        raise ConfigError(f"--data-name {item!r}: give a name, e.g. --data-name opinionqa=OpinionQA")
    return (short.strip() if sep else None), name.strip()


def results_frame(records: list[RunRecord], metric: str = "accuracy", names: dict[DataKey, str] | None = None) -> pd.DataFrame:
    """One row per finished run with the derived columns of the module docstring; ``score`` is
    ``metric`` (runs without it are left out); ``names`` (:func:`display_names`) names the data."""
    names = names or display_names(records)
    rows = []
    for record in records:
        if metric != "accuracy" and metric not in record.metrics:
            continue
        config, training = record.config, record.training
        variant = dict(record.variant)
        if config.cf_solver != "als" or config.cf_dim != 16:
            variant.update(cf_solver=config.cf_solver, cf_dim=config.cf_dim)  # a different persona space
        for name in ("fold_in", "prompt_texts"):  # other vectors for people outside the fit; other prompts
            if getattr(config, name) != OMITTED_AT_DEFAULT[name]:
                variant[name] = getattr(config, name)
        if config.dtype != "auto":  # computed in another precision than the device's default
            variant["dtype"] = config.dtype
        overrides = recipe_overrides(record, variant)
        score = record.metric(metric)
        row = record.as_dict()
        row.update(
            kind=record.kind, uses_persona=record.method_info.uses_persona,
            variant=options_label(variant), variant_options=variant, untrained_control=record.untrained_control,
            budget_label=budget_label(training.budget if training else None), train_answers=training.train_answers if training else None,
            epochs=training.epochs if training else None,
            recipe=recipe_label(training.recipe if training else "", overrides), recipe_name=training.recipe if training else "",
            recipe_overrides=overrides, waves_label="+".join(config.waves) or "all",
            model=shown_model(config.model), k=config.k if config.users == "unseen" else None, protocol=config.protocol,
            option_order=config.option_order,
            data=names[data_key(record)],  # titles and scopes by the data's name, never its path
            train_seed=config.seed if record.options.get("train_seed") is None else record.options["train_seed"],
            redrawn=record.options.get("train_seed") not in (None, config.seed),
            requested_budget=requested_budget(record),
            metric=metric, score=score.value, score_ci95=list(score.ci95), higher_is_better=score.higher_is_better,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def method_rank(kind: str, method: str) -> tuple[int, str]:
    """Column order: references, then prompting, steering and fine-tuning; by name within a kind."""
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), method)


def latest(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys``, the run with the largest training budget, then the most recent."""
    ordered = frame.assign(_answers=frame["train_answers"].fillna(-1)).sort_values(["_answers", "finished_at"])
    return ordered.drop_duplicates(keys, keep="last").drop(columns="_answers")


@lru_cache(maxsize=256)
def samples(runs_dir: str, run_id: str) -> pd.DataFrame:
    """A run's per-doc samples (cached: tables compare the same references often)."""
    return read_samples(Path(runs_dir) / run_id)


@lru_cache(maxsize=256)
def person_metrics(runs_dir: str, run_id: str) -> pd.DataFrame | None:
    """A run's metrics per person (None for runs from before they were kept)."""
    return read_person_metrics(Path(runs_dir) / run_id)
