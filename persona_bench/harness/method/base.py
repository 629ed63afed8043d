"""The Method plugin contract and its registry.

A method is a class with a unique ``name`` registered with :func:`register_method`. The runner
hands it a :class:`~persona_bench.harness.method.context.RunContext` twice:

* ``prepare(context)``: learn whatever it needs from ``context.train_answers()`` (the train
  people's train answers; nothing else is labelled training data);
* ``score(docs, context)``: return one row of option scores per doc (higher = more likely;
  ``-inf`` past a question's last option). The prediction is the row's argmax.

A method describes itself, and the run's ``results.json`` keeps that description, so tables
can be drawn without the method installed: ``kind`` (``reference``: no language model;
``prompting``: a frozen LM prompted with text; ``steering``: a frozen LM steered by a learned
module; ``finetuning``: the LM with weights trained on the train split, e.g. a LoRA adapter), ``uses_persona``, ``needs_model``, and :meth:`Method.report` (training budget, recipe).
Options are a dataclass ``Options`` on the class, each field declared once with
:func:`persona_bench.harness.core.options.option` (default, help, role, choices); the command line
turns each field into a flag (``k_context`` -> ``--k-context``) with that help, declared choices
are checked before any work, and the values given are part of the run's identity. Options whose
role is budget, recipe or operational change how much or how a method trains, not what it is
(``budget_options``, derived from the declarations): the leaderboard compares them as budgets,
not as variants. Third-party methods register through the
``persona_bench.methods`` entry-point group or ``persona-bench run --import MODULE``; every
sub-package of :mod:`persona_bench.methods` is imported, so a new built-in family is one folder.
The built-in packages register through the same entry-point group (``builtin-baselines``,
``builtin-steering`` in pyproject.toml): this module never names the packages built on it.
"""
from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from ..core.errors import ConfigError
from ..core.options import NOT_WHAT_IT_IS, accepts, allowed_types, check_choices, role, shaping_the_untrained, type_names, with_roles
from ..core.plugins import METHOD_ENTRY_POINT_GROUP, load_plugins, plugins
from ..data.protocol import PROTOCOLS
from ..metrics.groups import SCORES_ARE
from ..runs.config import DEFAULT_MODEL, OMITTED_AT_DEFAULT, RunConfig
from .context import RunContext

KINDS = ("reference", "prompting", "steering", "finetuning")
BUILTIN_ENTRY_POINTS = ("builtin-baselines", "builtin-steering")
METHODS: dict[str, type["Method"]] = {}


class Method(ABC):
    """Base class of every way to predict a person's answer (see module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # reference | prompting | steering: every method declares it
    needs_model: ClassVar[bool] = False  # True: --model names the language model it uses
    uses_persona: ClassVar[bool] = False  # True: --persona changes its predictions
    budget_options: ClassVar[frozenset[str]] = frozenset()  # derived: options that set how it trains, not what it is
    untrained_options: ClassVar[frozenset[str]] = frozenset()  # derived: budget options that also shape the untrained model
    quick_options: ClassVar[dict] = {}  # options that keep the shared conformance suite fast
    protocols: ClassVar[tuple[str, ...]] = PROTOCOLS  # the split protocols it can score under (harness.data.protocol)
    scores_are: ClassVar[str] = "logits"  # logits | counts: how its scores become an answer distribution (harness.metrics.groups)

    @dataclass(frozen=True)
    class Options:
        """No options."""

    def __init_subclass__(cls, **kwargs) -> None:
        """Derive the option roles from the Options declarations (a class that sets them itself keeps its own)."""
        super().__init_subclass__(**kwargs)
        if "budget_options" not in cls.__dict__:
            cls.budget_options = with_roles(cls.Options, *NOT_WHAT_IT_IS)
        if "untrained_options" not in cls.__dict__:
            cls.untrained_options = shaping_the_untrained(cls.Options)

    def __init__(self, options: "Method.Options | None" = None):
        self.options = options or self.Options()

    @classmethod
    def check(cls, options: "Method.Options") -> None:
        """Reject invalid option values with a :class:`ConfigError` (before any work is done)."""

    def prepare(self, context: RunContext) -> None:
        """Train on the train split (default: nothing to learn)."""

    @abstractmethod
    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        """Option scores, shape (len(docs), max options), ``-inf`` where a doc has no option."""

    def report(self) -> dict:
        """What results.json records about this prepared method beyond its options
        (learning methods: ``budget`` and ``recipe``); JSON-ready."""
        return {}

    @classmethod
    def describe(cls) -> dict:
        """The method's self-description, stored in every results.json."""
        return {"kind": cls.kind, "uses_persona": cls.uses_persona, "needs_model": cls.needs_model, "description": cls.description,
                "scores_are": cls.scores_are, "protocols": list(cls.protocols),
                "option_roles": {item.name: role(item) if "role" in item.metadata else "recipe" if item.name in cls.budget_options else "shape"
                                 for item in fields(cls.Options)}}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.kind not in KINDS:
        raise ConfigError(f"method {cls.name!r} must declare kind = one of {', '.join(KINDS)} (it has {cls.kind!r})")
    if cls.scores_are not in SCORES_ARE:
        raise ConfigError(f"method {cls.name!r}: scores_are must be one of {', '.join(SCORES_ARE)} (it has {cls.scores_are!r})")
    existing = METHODS.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ConfigError(f"method name {cls.name!r} is already registered by {existing.__module__}")
    METHODS[cls.name] = cls
    return cls


def import_children(name: str) -> None:
    """Import a package and each module or sub-package directly in it (registering what they define)."""
    package = importlib.import_module(name)
    for module in pkgutil.iter_modules(getattr(package, "__path__", []), prefix=f"{name}."):
        if not module.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(module.name)


def load_methods(extra_modules: tuple[str, ...] = ()) -> dict[str, type[Method]]:
    """Import the built-in methods and entry-point plugins (the built-ins are entry points too) and
    ``extra_modules``; return the registry."""
    found = plugins(METHOD_ENTRY_POINT_GROUP)
    if not set(BUILTIN_ENTRY_POINTS) <= {entry.name for entry in found}:
        raise ConfigError("persona-bench's built-in methods are not registered: install the package (pip install -e . from a clone, "
                          "or ./install.sh) rather than running it from a source folder")
    load_plugins(found, "method plugin")
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
    """The method's Options from a dict, rejecting unknown keys and values of the wrong type."""
    known = {f.name: f for f in fields(method.Options)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"method {method.name!r} has no option(s) {', '.join(unknown)} (has: {', '.join(sorted(known)) or 'none'})")
    hints = typing.get_type_hints(method.Options)
    for key, value in values.items():
        allowed = allowed_types(hints.get(key), known[key].default)
        if allowed and not accepts(allowed, value):
            raise ConfigError(f"method {method.name!r} option {key}: expected {type_names(allowed)}, got {value!r}")
    options = method.Options(**values)
    check_choices(options)
    method.check(options)
    return options


def resolve_config(config: RunConfig) -> RunConfig:
    """Validated copy of ``config`` with the method's defaults filled in (model only for methods that use one)."""
    config.check()
    method = get_method(config.method)
    build_options(method, config.method_options)
    if config.protocol not in method.protocols:
        raise ConfigError(f"method {method.name!r} cannot score under --protocol {config.protocol} (it supports {', '.join(method.protocols)})")
    model = (config.model or DEFAULT_MODEL) if method.needs_model else None
    persona = config.persona if method.uses_persona else "individual"
    dtype = config.dtype if method.needs_model else "auto"
    prompt_texts = config.prompt_texts if method.needs_model else OMITTED_AT_DEFAULT["prompt_texts"]  # unused settings leave its id alone
    fold_in = config.fold_in if method.uses_persona else OMITTED_AT_DEFAULT["fold_in"]
    return replace(config, model=model, persona=persona, dtype=dtype, waves=tuple(config.waves), prompt_texts=prompt_texts, fold_in=fold_in)
