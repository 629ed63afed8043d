"""Persona kinds, as ``--persona`` names them (parsed without the CF machinery, so a run's
configuration and the command line's help load no torch)."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError


@dataclass(frozen=True)
class PersonaKind:
    """A parsed persona kind: ``individual``, ``cluster`` / ``cluster:K`` or ``demographic:T[xT]``."""

    kind: str
    k: int | None = None
    traits: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "PersonaKind":
        """Parse the ``--persona`` argument; bad input raises :class:`ConfigError`."""
        kind, _, argument = text.partition(":")
        if kind == "individual" and not argument:
            return cls("individual")
        if kind == "cluster":
            if not argument:
                return cls("cluster")
            if argument.isdigit() and int(argument) >= 1:
                return cls("cluster", k=int(argument))
        if kind == "demographic" and argument:
            traits = tuple(argument.split("x"))
            if len(set(traits)) < len(traits) or "" in traits:
                raise ConfigError(f"--persona {text!r}: name each trait once, e.g. demographic:EDUCATIONxPOLPARTY")
            return cls("demographic", traits=traits)
        raise ConfigError(f"--persona {text!r}: expected individual, cluster, cluster:K or demographic:TRAIT[xTRAIT]")

    def __str__(self) -> str:
        if self.kind == "cluster" and self.k:
            return f"cluster:{self.k}"
        if self.kind == "demographic":
            return "demographic:" + "x".join(self.traits)
        return self.kind
