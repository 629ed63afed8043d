"""Survey loaders, chosen by a data spec ``KIND[:ARGUMENT]``: built in ``demo[:N[xQ]]``,
``opinionqa:PATH`` and ``pew:PATH``; others registered with :func:`register_loader` or through the
``persona_bench.loaders`` entry-point group (an entry point names a module that registers its
loaders when imported).

A loader is ``loader(argument, waves, **options) -> Survey``: it parses its own argument (the
text after ``KIND:``; empty when the spec has none), keeps only ``waves`` (None: all), attaches
its bundles to the Survey (question subsets, steering contexts) and raises
:class:`~persona_bench.harness.data.survey.SurveyError` naming the file, row or key at fault.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...core.plugins import LOADER_ENTRY_POINT_GROUP, load_plugins, plugins
from ..survey import Survey, SurveyError

Loader = Callable[..., Survey]
LOADERS: dict[str, Loader] = {}


def register_loader(kind: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(argument, waves, **options) -> Survey`` for data specs ``kind:...``."""
    if not kind or not kind.replace("-", "").replace("_", "").isalnum():
        raise SurveyError(f"loader kind {kind!r}: letters, digits, - and _ only")

    def register(loader: Loader) -> Loader:
        existing = LOADERS.get(kind)
        if existing is not None and existing.__qualname__ != loader.__qualname__:
            raise SurveyError(f"data kind {kind!r} is already registered by {existing.__module__}")
        LOADERS[kind] = loader
        return loader

    return register


def loaders() -> dict[str, Loader]:
    """Every registered loader, the entry-point plugins' included."""
    load_plugins(plugins(LOADER_ENTRY_POINT_GROUP), "data loader plugin", skip=LOADERS, error=SurveyError)
    return LOADERS


def load_survey(spec: str, waves: list[str] | None = None, **options) -> Survey:
    """Load the survey named by ``spec`` restricted to ``waves`` (None: every wave with answers);
    ``options`` go to the loader (``pew``: ``metadata``, the OpinionQA folder whose info.csv files
    convert the raw waves; default: an ``opinionqa`` folder beside the .sav folder)."""
    kind, _, argument = spec.partition(":")
    known = LOADERS if kind in LOADERS else loaders()
    if kind not in known:
        raise SurveyError(f"data spec {spec!r}: unknown kind {kind!r} (expected one of {', '.join(f'{k}:...' for k in known)})")
    return known[kind](argument, waves, **options)


def data_kind(spec: str) -> str:
    """The loader kind of a data spec (``opinionqa:PATH`` -> ``opinionqa``)."""
    return spec.partition(":")[0]


@register_loader("demo")
def demo_loader(argument: str, waves: list[str] | None) -> Survey:
    """``demo``, ``demo:N`` (people) or ``demo:NxQ`` (people x questions): the embedded survey."""
    from .demo import load_demo

    people, _, questions = argument.partition("x")
    if argument and not (people.isdigit() and int(people) > 0 and (not questions or questions.isdigit() and int(questions) > 1)):
        raise SurveyError(f"data spec 'demo:{argument}': demo takes an optional size, people or peoplexquestions, e.g. demo:500 or demo:18000x1476")
    size = {"n_people": int(people)} if people else {}
    size.update({"n_questions": int(questions)} if questions else {})
    return load_demo(**size).select_waves(waves)


@register_loader("opinionqa")
def opinionqa_loader(argument: str, waves: list[str] | None) -> Survey:
    """``opinionqa:PATH``: OpinionQA's human_resp folders, with its model_input bundles."""
    from .model_input import with_bundles
    from .opinionqa import load_opinionqa

    if not argument:
        raise SurveyError("data spec 'opinionqa': expected opinionqa:PATH (a folder holding human_resp)")
    return with_bundles(load_opinionqa(argument, waves), Path(argument))


@register_loader("pew")
def pew_loader(argument: str, waves: list[str] | None, metadata: str | Path | None = None) -> Survey:
    """``pew:PATH``: raw Pew .sav waves converted with OpinionQA's metadata."""
    from .pew import load_pew

    if not argument:
        raise SurveyError("data spec 'pew': expected pew:PATH (a folder of Pew .sav files)")
    return load_pew(argument, waves, metadata)
