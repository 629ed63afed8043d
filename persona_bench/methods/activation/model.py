"""The activation steerer: persona vector -> 2-layer MLP -> one vector per chosen decoder layer,
added to that layer's output (the residual stream) at every position.

The family of contrastive activation addition (Rimsky et al. 2024) and representation
fine-tuning, made per person: instead of one steering vector for a behaviour, a small network
learned on the train split maps each persona vector to its own additions. Outputs are measured
in units of the residual stream's own size at each layer (its RMS on real prompts), times
``scale``; the last layer of the network starts at zero, so training starts from the unsteered
model. Hooks come from the one steered forward (:mod:`persona_bench.harness.scoring.steering`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...harness.core.errors import ConfigError
from ...harness.scoring.steerer import PersonaMLP, Steerer, register_steerer
from ...harness.scoring.steering import Steering, activation_scales, decoder_layers


def parse_layers(text: str, count: int) -> tuple[int, ...]:
    """``middle`` (the layer at half depth), ``all``, or indices such as ``4,8,12`` (negative from the top)."""
    if text == "middle":
        return (count // 2,)
    if text == "all":
        return tuple(range(count))
    try:
        chosen = tuple(int(part) % count if -count <= int(part) < count else None for part in text.split(","))
    except ValueError:
        chosen = (None,)
    if None in chosen:
        raise ConfigError(f"--layers {text!r}: use middle, all, or indices below {count} such as 4,8")
    return tuple(sorted(set(chosen)))


@register_steerer
class ActivationSteerer(Steerer):
    """Persona vector (standardised) -> 2-layer MLP -> residual additions (see module docstring)."""

    family = "activation"

    @dataclass(frozen=True)
    class Config(Steerer.Config):
        layers: tuple[int, ...] = ()
        hidden_size: int = 0  # the LM's residual width
        hidden: int = 32
        scale: float = 1.0

        def __post_init__(self) -> None:
            object.__setattr__(self, "layers", tuple(self.layers))
            if self.hidden < 1 or self.scale <= 0:
                raise ConfigError("activation steering needs hidden >= 1 and scale > 0")

    @classmethod
    def for_model(cls, model: torch.nn.Module, persona_dim: int, layers: str = "middle", hidden: int = 32, scale: float = 1.0) -> "ActivationSteerer":
        """A steerer for ``model`` adding to the decoder layers named by ``layers``."""
        chosen = parse_layers(layers, len(decoder_layers(model)))
        return cls(cls.Config(persona_dim=persona_dim, layers=chosen, hidden_size=model.config.hidden_size, hidden=hidden, scale=scale))

    def __init__(self, config: "ActivationSteerer.Config"):
        super().__init__(config)
        self.mlp = PersonaMLP(config.persona_dim, config.hidden, len(config.layers) * config.hidden_size, zero_output=True)

    def initialise(self, personas: torch.Tensor, model: torch.nn.Module, prompts: Sequence[Sequence[int]]) -> None:
        self.mlp.standardise_on(personas)
        residual = activation_scales(model, prompts)["residual"]
        units = torch.cat([residual[layer].expand(self.config.hidden_size) for layer in self.config.layers])
        self.mlp.output_scale.copy_(units * self.config.scale)

    def steering(self, personas: torch.Tensor) -> Steering:
        flat = self.mlp(personas)
        size = self.config.hidden_size
        return Steering(residual={layer: flat[:, i * size : (i + 1) * size] for i, layer in enumerate(self.config.layers)})
