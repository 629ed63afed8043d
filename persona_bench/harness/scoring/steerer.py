"""Trainable steering modules: persona vectors in, per-row :class:`~.steering.Steering` out.

A steering family (``methods/<family>/``) defines one :class:`Steerer` subclass, registered by
name with :func:`register_steerer`. Its ``Config`` dataclass is everything needed to rebuild
it; data-dependent state (persona standardisation, output scales read from the LM) lives in
buffers, so a saved module is ``steerer.json`` (family + config) plus ``steerer.safetensors``
and loads without unpickling anything. :class:`PersonaMLP` is the shared building block:
standardised persona -> Linear -> Tanh -> Linear, times a per-output scale.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import torch
from safetensors.torch import load_file, save

from ..core.atomic import atomic_write_bytes, atomic_write_json
from ..core.errors import ConfigError
from ..core.plugins import METHOD_ENTRY_POINT_GROUP, STEERER_ENTRY_POINT_GROUP, load_plugins, plugins
from .steering import Steering

STEERERS: dict[str, type["Steerer"]] = {}


class PersonaMLP(torch.nn.Module):
    """Standardised persona -> Linear(hidden) -> Tanh -> Linear(outputs), times ``output_scale``.

    ``output_scale`` (a buffer, default ones) sets the size of one unit of output per element,
    e.g. the LM's own key/value size, so the optimiser's steps mean the same at every layer.
    ``zero_output`` starts the last layer's weights at zero: every persona then gets the
    output bias at first (zero, or a chosen starting point) and learns to differ from it.
    """

    def __init__(self, persona_dim: int, hidden: int, outputs: int, zero_output: bool = False):
        super().__init__()
        self.register_buffer("persona_mean", torch.zeros(persona_dim))
        self.register_buffer("persona_scale", torch.ones(persona_dim))
        self.register_buffer("output_scale", torch.ones(outputs))
        self.net = torch.nn.Sequential(torch.nn.Linear(persona_dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, outputs))
        if zero_output:
            torch.nn.init.zeros_(self.net[2].weight)
            torch.nn.init.zeros_(self.net[2].bias)

    @torch.no_grad()
    def standardise_on(self, personas: torch.Tensor) -> None:
        """Centre and scale inputs by the train personas' mean and standard deviation."""
        self.persona_mean.copy_(personas.float().mean(0))
        self.persona_scale.copy_(personas.float().std(0) + 1e-6)

    @torch.no_grad()
    def take_raw_personas(self) -> None:
        """Feed persona vectors to the MLP as they are (the paper's SPM input), undoing :meth:`standardise_on`."""
        self.persona_mean.zero_()
        self.persona_scale.fill_(1.0)

    @torch.no_grad()
    def start_at(self, output: torch.Tensor) -> None:
        """Make ``output`` (in output units, before scaling) what every persona starts from."""
        self.net[2].bias.copy_(output.float() / self.output_scale)

    def forward(self, personas: torch.Tensor) -> torch.Tensor:
        standardised = (personas.float() - self.persona_mean) / self.persona_scale
        return self.net(standardised) * self.output_scale


class Steerer(torch.nn.Module, ABC):
    """A trainable module mapping persona vectors to per-row steering of a frozen LM."""

    family: ClassVar[str]

    @dataclass(frozen=True)
    class Config:
        """Everything needed to rebuild the module (JSON-ready fields)."""

        persona_dim: int

    def __init__(self, config: "Steerer.Config"):
        super().__init__()
        self.config = config

    def initialise(self, personas: torch.Tensor, model: torch.nn.Module, prompts: Sequence[Sequence[int]]) -> None:
        """Data-dependent set-up before training: the train ``personas``, the frozen ``model`` and a
        few real prompts (token rows) to read the model's own scales from."""

    @abstractmethod
    def steering(self, personas: torch.Tensor) -> Steering:
        """The steering of one batch of rows, one persona vector each."""

    def forward(self, personas: torch.Tensor) -> Steering:
        """Calling the module is :meth:`steering` (so DistributedDataParallel can wrap it)."""
        return self.steering(personas)

    # ------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Write steerer.safetensors (weights and buffers) and steerer.json (family and config)."""
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / "steerer.safetensors", save({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}))
        atomic_write_json(folder / "steerer.json", {"family": self.family, "config": asdict(self.config)})

    @classmethod
    def from_config(cls, raw: dict) -> "Steerer":
        """An untrained module from a saved config dict."""
        return cls(cls.Config(**raw))


def register_steerer(cls: type[Steerer]) -> type[Steerer]:
    """Class decorator registering a steering module under ``cls.family``."""
    existing = STEERERS.get(cls.family)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ConfigError(f"steering family {cls.family!r} is already registered by {existing.__module__}")
    STEERERS[cls.family] = cls
    return cls


def steerer_class(family: str) -> type[Steerer] | None:
    """The registered module of ``family``: registered already, else the ``persona_bench.steerers``
    entry point of that name alone."""
    load_plugins(plugins(STEERER_ENTRY_POINT_GROUP, family), "steering family", skip=STEERERS)
    return STEERERS.get(family)


def load_steerer(folder: Path) -> Steerer:
    """Rebuild a saved steering module (safetensors + JSON; no pickle)."""
    try:
        raw = json.loads((folder / "steerer.json").read_text())
        family, config = raw["family"], raw["config"]
        state = load_file(str(folder / "steerer.safetensors"))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder}: not a saved steering module ({exc})") from None
    found = steerer_class(family)
    if found is None:  # a family registered only by its method package: import the method plugins
        load_plugins(plugins(METHOD_ENTRY_POINT_GROUP), "method plugin")
        found = STEERERS.get(family)
    if found is None:
        raise ConfigError(f"{folder}: steering family {family!r} is not installed (known: {', '.join(sorted(STEERERS))}; a third-party "
                          "family registers its module through the persona_bench.steerers entry point or is imported with --import)")
    module = found.from_config(config)
    module.load_state_dict(state)
    return module


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's weights and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:20]
