"""Survey loaders, chosen by a data spec: ``demo[:N[xQ]]``, ``opinionqa:PATH`` or ``pew:PATH``."""
from __future__ import annotations

from pathlib import Path

from ..survey import Survey, SurveyError

DATA_KINDS = ("demo", "opinionqa", "pew")


def load_survey(spec: str, waves: list[str] | None = None, metadata: str | Path | None = None) -> Survey:
    """Load the survey named by ``spec`` restricted to ``waves`` (None: every wave with answers).

    ``metadata`` is the OpinionQA folder whose info.csv files convert raw Pew waves
    (``pew:`` only; default: an ``opinionqa`` folder beside the .sav folder).
    """
    kind, _, argument = spec.partition(":")
    if kind == "demo":
        from .demo import load_demo

        people, _, questions = argument.partition("x")
        if argument and not (people.isdigit() and int(people) > 0 and (not questions or questions.isdigit() and int(questions) > 1)):
            raise SurveyError(f"data spec {spec!r}: demo takes an optional size, people or peoplexquestions, e.g. demo:500 or demo:18000x1476")
        size = {"n_people": int(people)} if people else {}
        size.update({"n_questions": int(questions)} if questions else {})
        return load_demo(**size).select_waves(waves)
    if not argument:
        raise SurveyError(f"data spec {spec!r}: expected demo, opinionqa:PATH or pew:PATH")
    if kind == "opinionqa":
        from .model_input import with_question_sets
        from .opinionqa import load_opinionqa

        return with_question_sets(load_opinionqa(argument, waves), Path(argument))
    if kind == "pew":
        from .pew import load_pew

        return load_pew(argument, waves, metadata)
    raise SurveyError(f"data spec {spec!r}: unknown kind {kind!r} (expected one of {', '.join(DATA_KINDS)})")
