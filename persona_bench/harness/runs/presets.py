"""Named presets: partial settings of a run and of its method, under one name (``--preset quick``).

A preset fills run settings (any :class:`~persona_bench.harness.runs.config.RunConfig` field) and
method options; each method option is applied only where the chosen method declares it (``--preset
quick --method raw`` takes just the eval-people cap). Flags given explicitly always win. A preset
is a shorthand, not part of a run's identity: a run made with ``--preset quick`` is the run made
with the flags it stands for, and is reused by either. The record of a run names the preset of the
command or grid entry that made it (``preset``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Mapping

from ..core.errors import ConfigError

PRESETS: dict[str, "Preset"] = {}


@dataclass(frozen=True)
class Preset:
    """A named set of run settings (``run``) and method options (``method``)."""

    name: str
    description: str
    run: Mapping[str, object] = field(default_factory=dict)
    method: Mapping[str, object] = field(default_factory=dict)

    def method_options(self, options: type, recipes: Mapping[str, dict] | None = None) -> dict:
        """The preset's method options that a method's ``Options`` dataclass declares (a ``recipe`` only
        where the method has one of that name, ``recipes``)."""
        declared = {f.name for f in fields(options)}
        return {name: value for name, value in self.method.items()
                if name in declared and not (name == "recipe" and recipes is not None and value not in recipes)}

    def flags(self, options: type | None = None, recipes: Mapping[str, dict] | None = None) -> str:
        """The flags it stands for (for a method whose ``Options`` is given: those that method
        takes): ``--max-eval-people 40 --mode prompt ...``."""
        method = self.method if options is None else self.method_options(options, recipes)
        def flag(name: str, value) -> str:
            dashed = name.replace("_", "-")
            return (f"--{dashed}" if value else f"--no-{dashed}") if isinstance(value, bool) else f"--{dashed} {value}"

        return " ".join(flag(name, value) for name, value in {**self.run, **method}.items())


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to the registry (read-only from then on)."""
    PRESETS[preset.name] = Preset(preset.name, preset.description, MappingProxyType(dict(preset.run)), MappingProxyType(dict(preset.method)))
    return PRESETS[preset.name]


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (a ConfigError lists the known ones, or names a run setting
    that RunConfig does not have)."""
    from .config import RunConfig  # imports torch: only once a preset is used

    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: choose from {', '.join(sorted(PRESETS))}")
    unknown = set(PRESETS[name].run) - {f.name for f in fields(RunConfig)}
    if unknown:
        raise ConfigError(f"preset {name!r}: {', '.join(sorted(unknown))} is not a run setting")
    return PRESETS[name]


register_preset(Preset(
    "quick",
    "minutes on a 2-core CPU: 40 eval people; a steering method trains 1 epoch on 3,000 answers "
    "(SPM: prompt mode, 4 virtual tokens placed before the answer cue) -- the README's main job",
    run={"max_eval_people": 40},
    method={"mode": "prompt", "virtual_tokens": 4, "placement": "answer", "max_train_answers": 3000, "epochs": 1},
))


register_preset(Preset(
    "paper",
    "Li et al. 2023 as written: CF <u_i, q_j> by Adam (lr 1e-3, batch 2048), unseen people folded in by optimising "
    "their vector with the questions fixed, the prompts of Figure 4, SPM prefix-tuning with one virtual token and a "
    "32-unit MLP on the raw (unstandardised) CF vector, the paper's recipe (AdamW lr 1e-3, wd 1e-3, batch 16, up to "
    "10 epochs, patience 2) and Eq. 2's loss on the response token. Where the paper is silent it keeps this "
    "project's defaults: 80/20 people and answer splits, validation 10% of the training budget (at most 2,000 "
    "answers), the fold-in's optimiser (Adam lr 1e-2, 3,000 full-batch steps, cosine decay, from the train "
    "people's mean vector)",
    run={"cf_solver": "adam", "fold_in": "optimise", "prompt_texts": "paper"},
    method={"recipe": "paper", "mode": "prefix", "virtual_tokens": 1, "hidden": 32, "standardise": False, "loss": "response"},
))
