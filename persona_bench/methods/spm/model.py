"""The soft-prompting model (SPM): persona embedding -> MLP -> virtual tokens for a frozen LM.

Shaped like peft's PrefixEncoder (embedding -> Linear -> Tanh -> Linear -> per-layer key/values),
but the input is a persona vector, and every row of a batch gets its own virtual tokens (peft
expands one prefix over the batch). Two modes (paper Table 7):

* ``prefix`` (prefix-tuning): T virtual key/value pairs in every attention layer, shaped from a
  real forward, so multi-query / grouped-query heads (Falcon, Llama/SmolLM2) get exactly as many
  key/value heads as the model caches;
* ``prompt`` (prompt-tuning): T virtual input embeddings before the prompt.

Two placements of the virtual tokens:

* ``start`` (the paper's): before the prompt, so every prompt token reads the persona;
* ``answer``: between the question and its answer cue ("\nAnswer:"), so only the cue reads the
  persona (and, in prompt mode, the virtual tokens read the question). The question's own
  key/values no longer depend on the persona: the frozen LM computes them once per question,
  and a training step runs the virtual tokens and the cue alone, about ten times fewer tokens
  per answer on OpinionQA-sized prompts (benchmarks/README.md, recipe table).

Three initialisations:

* ``paper``: PyTorch's default initialisation, outputs in raw units. Its keys and values start
  around 0.3 in size while a model's own are several times larger (SmolLM2: keys ~2), and AdamW
  moves each output by about the learning rate per step, so at small budgets the prefix never
  reaches the scale at which the model attends to it (benchmarks/README.md, recipe table);
* ``scaled``: each output is measured in units of the model's own size at that layer (the RMS of
  its keys, values or input embeddings on real prompts), and the last layer starts at zero, so
  training starts from a neutral prefix and a step means the same at every layer;
* ``sink``: as ``scaled``, but every persona starts from the model's own opening: the keys and
  values (or input embeddings) it computes at the first T positions of real prompts, averaged.
  The prefix then starts where the model already looks (a zero key draws attention weight
  exp(0) against keys of size ~2 and dilutes the prompt), and learning moves away from there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...harness.core.errors import ConfigError
from ...harness.scoring.steerer import PersonaMLP, Steerer, register_steerer
from ...harness.scoring.steering import Steering, activation_scales, kv_shapes, leading_states

MODES = ("prefix", "prompt")
PLACEMENTS = ("start", "answer")
INITS = ("paper", "scaled", "sink")


@register_steerer
class SoftPromptModel(Steerer):
    """Persona vector (standardised) -> 2-layer MLP -> virtual tokens (see module docstring)."""

    family = "spm"

    @dataclass(frozen=True)
    class Config(Steerer.Config):
        kv_shapes: tuple[tuple[int, int], ...] = ()  # per layer: (key/value heads, head size)
        embed_dim: int = 0
        mode: str = "prefix"
        virtual_tokens: int = 1
        hidden: int = 32
        init: str = "paper"
        placement: str = "start"
        answer_cue: tuple[int, ...] = ()  # the prompt's closing tokens, for placement "answer"

        def __post_init__(self) -> None:
            object.__setattr__(self, "kv_shapes", tuple(tuple(shape) for shape in self.kv_shapes))
            object.__setattr__(self, "answer_cue", tuple(self.answer_cue))
            if self.mode not in MODES:
                raise ConfigError(f"SPM mode {self.mode!r}: choose prefix or prompt")
            if self.placement not in PLACEMENTS:
                raise ConfigError(f"SPM placement {self.placement!r}: choose {' or '.join(PLACEMENTS)}")
            if self.init not in INITS:
                raise ConfigError(f"SPM init {self.init!r}: choose from {', '.join(INITS)}")
            if self.virtual_tokens < 1 or self.hidden < 1:
                raise ConfigError("SPM needs virtual_tokens >= 1 and hidden >= 1")

        @property
        def output_size(self) -> int:
            if self.mode == "prompt":
                return self.virtual_tokens * self.embed_dim
            return self.virtual_tokens * sum(2 * heads * dim for heads, dim in self.kv_shapes)

    @classmethod
    def for_model(cls, model: torch.nn.Module, persona_dim: int, **options) -> "SoftPromptModel":
        """An SPM shaped for ``model``."""
        embed_dim = model.get_input_embeddings().embedding_dim
        return cls(cls.Config(persona_dim=persona_dim, kv_shapes=kv_shapes(model), embed_dim=embed_dim, **options))

    def __init__(self, config: "SoftPromptModel.Config"):
        super().__init__(config)
        self.mlp = PersonaMLP(config.persona_dim, config.hidden, config.output_size, zero_output=config.init != "paper")

    def initialise(self, personas: torch.Tensor, model: torch.nn.Module, prompts: Sequence[Sequence[int]]) -> None:
        self.mlp.standardise_on(personas)
        if self.config.init != "paper":
            self.mlp.output_scale.copy_(self.output_units(activation_scales(model, prompts)))
        if self.config.init == "sink":
            self.mlp.start_at(self.flatten(leading_states(model, prompts, self.config.virtual_tokens)))

    def flatten(self, states: dict) -> torch.Tensor:
        """``leading_states`` laid out as this SPM's output vector (one row's worth)."""
        if self.config.mode == "prompt":
            return states["embeddings"].reshape(-1)
        return torch.cat([part for key, value in zip(states["keys"], states["values"]) for part in (key.reshape(-1), value.reshape(-1))])

    def output_units(self, scales: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per output, the size of what the model itself puts there."""
        tokens = self.config.virtual_tokens
        if self.config.mode == "prompt":
            return scales["embeddings"].expand(tokens * self.config.embed_dim).clone()
        parts = []
        for (heads, dim), key, value in zip(self.config.kv_shapes, scales["keys"], scales["values"]):
            parts += [key.expand(tokens * heads * dim), value.expand(tokens * heads * dim)]
        return torch.cat(parts)

    def steering(self, personas: torch.Tensor) -> Steering:
        flat = self.mlp(personas)
        rows, tokens = flat.shape[0], self.config.virtual_tokens
        before = self.config.answer_cue if self.config.placement == "answer" else ()
        if self.config.mode == "prompt":
            return Steering(embeddings=flat.reshape(rows, tokens, self.config.embed_dim), before=before)
        layers, start = [], 0
        for heads, dim in self.config.kv_shapes:
            size = tokens * heads * dim
            keys = flat[:, start : start + size].reshape(rows, heads, tokens, dim)
            values = flat[:, start + size : start + 2 * size].reshape(rows, heads, tokens, dim)
            layers.append((keys, values))
            start += 2 * size
        return Steering(prefix=tuple(layers), before=before)
