"""What a run's data is, apart from where it lies.

A run's identity (its id, its shared split) reads :func:`data_identity`: the loader kind and a
fingerprint of the survey's content for the run's waves (who answered what, the questions' texts
and options, the respondents' traits and weights), so the same survey in two folders makes one run
and one leaderboard row. Leaderboard titles read :func:`data_name`, a short name (the data folder's
name) that never shows a directory. The embedded ``demo`` survey is generated in code: its spec
(``demo``, ``demo:600``) is its identity. A spec whose path does not exist here (a grid read on a
machine without the data) keeps its spec as identity, as every run did before 0.8.

Runs made before 0.8 were identified by the spec itself (path included); :func:`legacy_identity`
is that, and the runs folder keeps using such a run's folder (:func:`persona_bench.harness.runs.store.run_folder`)
while the data at that path still gives the answers its split was drawn from (:func:`split_fingerprint`).
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

EMBEDDED = ("demo",)  # kinds generated in code: the spec is the content


def data_name(spec: str) -> str:
    """A short name for titles: ``opinionqa`` for ``opinionqa:../data/opinionqa``, ``pew:raw`` for
    ``pew:/srv/raw``; an embedded survey's spec as it is."""
    kind, _, argument = spec.partition(":")
    if kind in EMBEDDED or not argument:
        return spec
    name = Path(argument.rstrip("/\\")).name or argument
    return kind if name == kind else f"{kind}:{name}"


def legacy_identity(spec: str) -> str:
    """How runs before 0.8 identified their data: the spec, path and all."""
    return spec


def data_identity(spec: str, waves: tuple[str, ...] | list[str] = ()) -> str:
    """``KIND:FINGERPRINT`` of the survey ``spec`` names, restricted to ``waves`` (see module docstring)."""
    folder = local_folder(spec)
    if folder is None:
        return legacy_identity(spec)
    return f"{spec.partition(':')[0]}:{survey_fingerprints(spec, tuple(waves), file_stamp(folder))[0]}"


def split_fingerprint(spec: str, waves: tuple[str, ...] | list[str], protocol: str) -> str | None:
    """The fingerprint a split of ``spec``'s survey records (``split.json``), as the data lies now;
    None where the spec names no folder here."""
    folder = local_folder(spec)
    if folder is None:
        return None
    if protocol != "cross-wave":  # the split is of the survey itself: the fingerprint its identity already computed
        return survey_fingerprints(spec, tuple(waves), file_stamp(folder))[1]
    return panel_fingerprint(spec, tuple(waves), file_stamp(folder))


def local_folder(spec: str) -> Path | None:
    """The file or folder a spec's survey is read from, where it exists here (None for an embedded
    survey, or a path this machine lacks)."""
    kind, _, argument = spec.partition(":")
    if kind in EMBEDDED or not argument or not Path(argument).exists():
        return None
    return Path(argument)


def file_stamp(path: Path) -> tuple:
    """(relative name, size, mtime) of every file under ``path``: a changed file is fingerprinted anew."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@lru_cache(maxsize=64)
def survey_fingerprints(spec: str, waves: tuple[str, ...], stamp: tuple) -> tuple[str, str]:
    """(content, answers) fingerprints of the loaded survey: a short hash of its whole content (the
    identity), and :func:`~persona_bench.harness.data.protocol.survey_fingerprint`, who answered what
    (what a split records); ``stamp`` only keys the cache."""
    from .loaders import load_survey
    from .protocol import survey_fingerprint

    survey = load_survey(spec, list(waves) or None)
    answers = survey_fingerprint(survey)
    digest = hashlib.sha256(answers.encode())
    for key in sorted(survey.questions):
        question = survey.questions[key]
        digest.update(json.dumps([key, question.text, list(question.options), list(question.ordinal)], default=str).encode())
    digest.update(survey.respondents.sort_index().to_csv(lineterminator="\n").encode())  # the same bytes on every platform
    return digest.hexdigest()[:16], answers


@lru_cache(maxsize=64)
def panel_fingerprint(spec: str, waves: tuple[str, ...], stamp: tuple) -> str:
    """What a cross-wave split of ``waves`` records: the answers fingerprint of their panel."""
    from .loaders import load_survey
    from .protocol import survey_fingerprint, survey_for

    return survey_fingerprint(survey_for(load_survey(spec, list(waves) or None), waves, "cross-wave"))
