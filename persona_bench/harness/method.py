"""The Method plugin contract and its registry.

A method is a class with a unique ``name`` registered with :func:`register_method`. The runner
hands it a :class:`~persona_bench.harness.runner.RunContext` twice:

* ``prepare(context)``: learn whatever it needs from ``context.train_answers()`` (the train
  people's train answers; nothing else is labelled training data);
* ``score(docs, context)``: return one row of option scores per doc (higher = more likely;
  ``-inf`` past a question's last option). The prediction is the row's argmax.

Options are a dataclass ``Options`` on the class; the command line turns each field into a
flag (``k_context`` -> ``--k-context``), and the values are part of the run's identity.
Third-party methods register through the ``persona_bench.methods`` entry-point group or
``persona-bench run --import MODULE``.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from .errors import ConfigError

if TYPE_CHECKING:
    from .runner import RunContext

BUILTIN_MODULES = ("persona_bench.baselines", "persona_bench.methods")
ENTRY_POINT_GROUP = "persona_bench.methods"
METHODS: dict[str, type["Method"]] = {}


class Method(ABC):
    """Base class of every way to predict a person's answer (see module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False  # True: --model names the language model it steers
    uses_persona: ClassVar[bool] = False  # True: --persona changes its predictions
    quick_options: ClassVar[dict] = {}  # options that keep the shared conformance suite fast

    @dataclass(frozen=True)
    class Options:
        """No options."""

    def __init__(self, options: "Method.Options | None" = None):
        self.options = options or self.Options()

    def prepare(self, context: "RunContext") -> None:
        """Train on the train split (default: nothing to learn)."""

    @abstractmethod
    def score(self, docs: pd.DataFrame, context: "RunContext") -> np.ndarray:
        """Option scores, shape (len(docs), max options), ``-inf`` where a doc has no option."""


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    existing = METHODS.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ConfigError(f"method name {cls.name!r} is already registered by {existing.__module__}")
    METHODS[cls.name] = cls
    return cls


def load_methods(extra_modules: tuple[str, ...] = ()) -> dict[str, type[Method]]:
    """Import the built-in methods, entry-point plugins and ``extra_modules``; return the registry."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
    for module in extra_modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--import {module}: {exc}") from None
    return METHODS


def get_method(name: str) -> type[Method]:
    """The registered method class called ``name``."""
    methods = load_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r} (registered: {', '.join(sorted(methods))})")
    return methods[name]


def build_options(method: type[Method], values: dict) -> Method.Options:
    """The method's Options from a dict, rejecting unknown keys."""
    known = {f.name for f in fields(method.Options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"method {method.name!r} has no option(s) {', '.join(unknown)} (has: {', '.join(sorted(known)) or 'none'})")
    return method.Options(**values)


def padded_scores(rows: list[np.ndarray], width: int | None = None) -> np.ndarray:
    """Stack ragged per-doc option scores into one array padded with ``-inf``."""
    width = width or max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -np.inf)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
