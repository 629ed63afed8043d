"""Options declared once: each field of a method's ``Options`` dataclass carries its help, its
choices and its role, and everything else is derived from that declaration (the command-line
flag and its help, the check of a choice, which options are part of what a method *is* and which
only say how much or how it trains), as peft's typed configs become flags through
``HfArgumentParser``.

Roles:

* ``shape``: what the method is (the default): a run that sets one is a variant of the method;
* ``budget``: how much it trains (answers, epochs): compared as training budgets, not variants;
* ``recipe``: how it trains (learning rate, schedule, initialisation...), filled by the recipe
  when left unset; also a budget, not a variant;
* ``operational``: how it runs (checkpoint interval, gradient checkpointing): same result;
* ``seed``: which draw of its training's randomness (``--train-seed``): the same method, budget and
  recipe trained again; the leaderboard shows the spread over such draws.

``untrained=True`` marks a budget option that also shapes the untrained control (a recipe may
set the initialisation), so the control keeps it.
"""
from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any

from .errors import ConfigError

ROLES = ("shape", "budget", "recipe", "operational", "seed")
NOT_WHAT_IT_IS = ("budget", "recipe", "operational", "seed")  # the roles that leave a method's variant alone


def option(default: Any, help: str, role: str = "shape", choices: tuple | None = None, untrained: bool = False) -> Any:
    """A field of an ``Options`` dataclass, declared once (see module docstring)."""
    if role not in ROLES:
        raise ConfigError(f"option role {role!r}: choose from {', '.join(ROLES)}")
    return field(default=default, metadata={"help": help, "role": role, "choices": tuple(choices) if choices else None,
                                            "untrained": untrained})


def role(item: Field) -> str:
    """A field's role (``shape`` for a plain field without a declaration)."""
    return item.metadata.get("role", "shape")


def with_roles(options: type, *roles: str) -> frozenset[str]:
    """The names of the options declared with one of ``roles``."""
    return frozenset(item.name for item in fields(options) if role(item) in roles)


def shaping_the_untrained(options: type) -> frozenset[str]:
    """The budget options the untrained control keeps (declared ``untrained=True``)."""
    return frozenset(item.name for item in fields(options) if item.metadata.get("untrained"))


def flag(name: str) -> str:
    """``k_context`` -> ``--k-context``."""
    return "--" + name.replace("_", "-")


def help_text(item: Field, choices: bool = True) -> str:
    """A field's help, then its choices (unless the flag lists them itself) and its default."""
    default = None if item.default is MISSING else item.default
    extras = [f"one of {', '.join(map(str, item.metadata['choices']))}" if choices and item.metadata.get("choices") else "",
              f"default: {default}" if not (default is None or default is False or default == "") else ""]
    extras = [extra for extra in extras if extra]
    return item.metadata.get("help", "") + (f" ({'; '.join(extras)})" if extras else "")


def allowed_types(hint: object, default: object) -> tuple[type, ...]:
    """The plain types an annotation allows (``int | None`` -> int, NoneType); from the default's
    type where the annotation says nothing usable."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    plain = tuple(t for t in members if isinstance(t, type))
    if plain and len(plain) == len(members):
        return plain
    return (type(default),) if default is not None else ()


def value_type(options: type, name: str, default: object) -> type:
    """The type a flag parses a field's value as (``int | None`` -> int; text where nothing says)."""
    found = [t for t in allowed_types(typing.get_type_hints(options).get(name), default) if t is not type(None)]
    return found[0] if found else str


def accepts(allowed: tuple[type, ...], value: object) -> bool:
    """Whether ``value`` fits ``allowed`` (run settings and method options alike): an int is a
    float, a bool is not a number."""
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed) or (float in allowed and isinstance(value, int))


TYPE_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false", dict: "a mapping of names to values",
              type(None): "nothing"}


def type_names(allowed: tuple[type, ...]) -> str:
    """``a whole number or nothing``."""
    return " or ".join(TYPE_WORDS.get(t, t.__name__) for t in allowed)


def check_types(options: Any) -> None:
    """Refuse a field whose value its annotation does not allow (a ConfigError naming the field)."""
    hints = typing.get_type_hints(type(options))
    for item in fields(options):
        allowed = allowed_types(hints.get(item.name), None if item.default is MISSING else item.default)
        if allowed and typing.get_origin(hints.get(item.name)) is not tuple and not accepts(allowed, getattr(options, item.name)):
            raise ConfigError(f"{item.name}: expected {type_names(allowed)}, got {getattr(options, item.name)!r}")


def check_choices(options: Any) -> None:
    """Refuse a value outside a field's declared choices (None: left to the recipe)."""
    for item in fields(options):
        choices, value = item.metadata.get("choices"), getattr(options, item.name)
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{flag(item.name)} {value!r}: choose from {', '.join(map(str, choices))}")
