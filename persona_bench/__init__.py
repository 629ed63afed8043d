"""persona-bench: steering language models toward data-driven personas (OpinionQA).

The library's public names, loaded on first use (``import persona_bench`` stays fast)::

    from persona_bench import RunConfig, evaluate, write_leaderboard

    record = evaluate(RunConfig(method="majority", data="demo"), runs_dir="runs")
    print(record.accuracy, record.ci95)
    write_leaderboard("runs", "leaderboard")
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> the module (under persona_bench) that defines it
PUBLIC = {
    "RunConfig": "harness.config",
    "evaluate": "harness.runner",
    "companions": "harness.runner",
    "build_context": "harness.runner",
    "RunContext": "harness.context",
    "load_survey": "harness.loaders",
    "register_loader": "harness.loaders",
    "Survey": "harness.survey",
    "Question": "harness.survey",
    "Method": "harness.method",
    "register_method": "harness.method",
    "LearnedSteering": "harness.learned",
    "Steerer": "harness.steerer",
    "register_steerer": "harness.steerer",
    "register_metric": "harness.metrics",
    "PersonDocs": "harness.metrics",
    "RunRecord": "harness.record",
    "write_leaderboard": "leaderboard.render",
    "ConfigError": "harness.errors",
    "PersonaBenchError": "harness.errors",
}
__all__ = ["__version__", *PUBLIC]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name loads on first use
    from .harness.config import RunConfig
    from .harness.context import RunContext
    from .harness.errors import ConfigError, PersonaBenchError
    from .harness.learned import LearnedSteering
    from .harness.loaders import load_survey, register_loader
    from .harness.method import Method, register_method
    from .harness.metrics import PersonDocs, register_metric
    from .harness.record import RunRecord
    from .harness.runner import build_context, companions, evaluate
    from .harness.steerer import Steerer, register_steerer
    from .harness.survey import Question, Survey
    from .leaderboard.render import write_leaderboard


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used (PEP 562)."""
    if name not in PUBLIC:
        raise AttributeError(f"module 'persona_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
