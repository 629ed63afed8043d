"""``activation``: steer a frozen LM by adding persona-dependent vectors to its residual stream.

Training, validation, checkpoints, reuse and scoring are the shared steering machinery
(:mod:`persona_bench.harness.training.learned`), exactly as for ``spm``; this package gives the
activation steerer's options (``--layers``, ``--scale``, ``--hidden``) and its recipe
(AdamW with warmup and cosine decay, the optimisation the recipe table found best for ``spm``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...harness.core.options import option
from ...harness.method.base import register_method
from ...harness.scoring.lm import LetterScoringLM
from ...harness.scoring.steerer import Steerer
from ...harness.training.learned import LearnedSteering
from .model import ActivationSteerer, parse_layers

DEFAULT = {"epochs": 10, "lr": 1e-2, "weight_decay": 1e-3, "batch_size": 16, "patience": 2, "warmup": 0.1, "schedule": "cosine"}


@register_method
class ActivationSteering(LearnedSteering):
    """Persona vector -> MLP -> additions to the residual stream at chosen decoder layers."""

    name = "activation"
    description = "activation steering: persona vector -> MLP -> vectors added to the residual stream"
    recipes: ClassVar[dict[str, dict]] = {"default": DEFAULT}
    default_recipe = "default"

    @dataclass(frozen=True)
    class Options(LearnedSteering.Options):
        layers: str = option("middle", "decoder layers steered: middle, all, or indices such as 4,8,12")
        scale: float = option(1.0, "one output unit = scale x the layer's residual RMS")
        hidden: int = option(32, "hidden units of the persona MLP")

    @classmethod
    def check(cls, options: "ActivationSteering.Options") -> None:
        super().check(options)
        parse_layers(options.layers, 10**6)  # the syntax; the range is checked against the model
        ActivationSteerer.Config(1, (), 0, options.hidden, options.scale)

    def build_steerer(self, lm: LetterScoringLM, persona_dim: int, settings: dict) -> Steerer:
        return ActivationSteerer.for_model(lm.model, persona_dim, settings["layers"], settings["hidden"], settings["scale"])
