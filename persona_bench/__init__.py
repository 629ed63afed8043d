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
    "RunConfig": "harness.runs.config",
    "evaluate": "harness.runner",
    "companions": "harness.runner",
    "build_context": "harness.runner",
    "RunContext": "harness.method.context",
    "load_survey": "harness.data.loaders",
    "register_loader": "harness.data.loaders",
    "Survey": "harness.data.survey",
    "Question": "harness.data.survey",
    "Method": "harness.method.base",
    "register_method": "harness.method.base",
    "option": "harness.core.options",
    "LearnedSteering": "harness.training.learned",
    "Steerer": "harness.scoring.steerer",
    "register_steerer": "harness.scoring.steerer",
    "register_metric": "harness.metrics.registry",
    "PersonDocs": "harness.metrics.registry",
    "RunRecord": "harness.runs.record",
    "write_leaderboard": "leaderboard.render",
    "ConfigError": "harness.core.errors",
    "PersonaBenchError": "harness.core.errors",
}
__all__ = ["__version__", *PUBLIC]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name loads on first use
    from .harness.core.errors import ConfigError, PersonaBenchError
    from .harness.core.options import option
    from .harness.data.loaders import load_survey, register_loader
    from .harness.data.survey import Question, Survey
    from .harness.method.base import Method, register_method
    from .harness.method.context import RunContext
    from .harness.metrics.registry import PersonDocs, register_metric
    from .harness.runner import build_context, companions, evaluate
    from .harness.runs.config import RunConfig
    from .harness.runs.record import RunRecord
    from .harness.scoring.steerer import Steerer, register_steerer
    from .harness.training.learned import LearnedSteering
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
