"""The steering module of a fine-tuned LM: none. ``finetune`` trains the LM's LoRA adapter alone,
and the shared trainer (checkpoints, validation, data parallel) is written for a steering module
beside the LM; this one has no weights and steers nothing, so everything it trains is the adapter."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...harness.scoring.steerer import Steerer, register_steerer
from ...harness.scoring.steering import Steering


@register_steerer
class NoSteering(Steerer):
    """Steers nothing: every row runs the LM (with its adapter) unsteered."""

    family = "none"

    @dataclass(frozen=True)
    class Config(Steerer.Config):
        pass

    def steering(self, personas: torch.Tensor) -> Steering:
        return Steering()
