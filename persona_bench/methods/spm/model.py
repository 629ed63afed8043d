"""The soft-prompting model (SPM): persona embedding -> MLP -> virtual tokens for a frozen LM.

Shaped like peft's PrefixEncoder (embedding -> Linear -> Tanh -> Linear -> per-layer key/values),
but the input is a persona vector, and every row of a batch gets its own prefix (peft expands
one prefix over the batch). Two modes (paper Table 7):

* ``prefix`` (prefix-tuning): T virtual key/value pairs in every attention layer, shaped from a
  real ``use_cache=True`` forward, so multi-query / grouped-query heads (Falcon, Llama/SmolLM2)
  get exactly as many key/value heads as the model caches;
* ``prompt`` (prompt-tuning): T virtual input embeddings before the prompt.

Saved as ``spm.safetensors`` + ``spm.json``; loading never unpickles.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import DynamicCache

from ...harness.atomic import atomic_write_json
from ...harness.errors import ConfigError

MODES = ("prefix", "prompt")


@dataclass(frozen=True)
class SPMShape:
    """What the SPM must produce for a given LM: per-layer (kv heads, head dim), embedding size."""

    kv_shapes: tuple[tuple[int, int], ...]
    embed_dim: int

    @classmethod
    def probe(cls, model) -> "SPMShape":
        """Read key/value shapes from a one-token ``use_cache=True`` forward (not the config:
        old Falcon configs say multi_query / n_head_kv, not num_key_value_heads)."""
        body = getattr(model, model.base_model_prefix)
        device = next(model.parameters()).device
        with torch.no_grad():
            cache = body(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=True).past_key_values
        shapes = tuple((layer.keys.shape[1], layer.keys.shape[3]) for layer in cache.layers)
        return cls(shapes, model.get_input_embeddings().embedding_dim)


@dataclass(frozen=True)
class SPMConfig:
    """Hyper-parameters and shapes of one SPM."""

    persona_dim: int
    shape: SPMShape
    mode: str = "prefix"
    virtual_tokens: int = 1
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"SPM mode {self.mode!r}: choose prefix or prompt")
        if self.virtual_tokens < 1 or self.hidden < 1:
            raise ConfigError("SPM needs virtual_tokens >= 1 and hidden >= 1")

    @property
    def output_size(self) -> int:
        if self.mode == "prompt":
            return self.virtual_tokens * self.shape.embed_dim
        return self.virtual_tokens * sum(2 * heads * dim for heads, dim in self.shape.kv_shapes)


class SoftPromptModel(torch.nn.Module):
    """Persona vector (standardised) -> 2-layer MLP -> virtual tokens (see module docstring)."""

    def __init__(self, config: SPMConfig, persona_mean: torch.Tensor, persona_scale: torch.Tensor):
        super().__init__()
        self.config = config
        self.register_buffer("persona_mean", persona_mean.float().clone())
        self.register_buffer("persona_scale", persona_scale.float().clone())
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(config.persona_dim, config.hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(config.hidden, config.output_size),
        )

    def forward(self, personas: torch.Tensor) -> torch.Tensor:
        """Flat virtual-token values, one row per persona."""
        return self.mlp((personas.float() - self.persona_mean) / self.persona_scale)

    def prefix_cache(self, personas: torch.Tensor, model_config, dtype: torch.dtype) -> DynamicCache:
        """Per-row prefix key/values for every layer, as a cache the LM attends to."""
        flat = self(personas).to(dtype)
        rows, tokens = flat.shape[0], self.config.virtual_tokens
        layers, start = [], 0
        for heads, dim in self.config.shape.kv_shapes:
            size = tokens * heads * dim
            keys = flat[:, start : start + size].reshape(rows, heads, tokens, dim)
            values = flat[:, start + size : start + 2 * size].reshape(rows, heads, tokens, dim)
            layers.append((keys, values))
            start += 2 * size
        return DynamicCache(ddp_cache_data=layers, config=model_config)

    def virtual_embeddings(self, personas: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per-row virtual input embeddings (rows, T, embed_dim)."""
        return self(personas).to(dtype).reshape(len(personas), self.config.virtual_tokens, self.config.shape.embed_dim)

    def steer(self, body, personas: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[dict, int]:
        """Inputs of the LM body with this SPM's virtual tokens per row, and the output offset."""
        dtype = body.get_input_embeddings().weight.dtype
        virtual_mask = torch.ones((len(input_ids), self.config.virtual_tokens), dtype=attention_mask.dtype, device=attention_mask.device)
        mask = torch.cat([virtual_mask, attention_mask], dim=1)
        if self.config.mode == "prefix":
            return {"input_ids": input_ids, "attention_mask": mask, "past_key_values": self.prefix_cache(personas, body.config, dtype)}, 0
        embeddings = torch.cat([self.virtual_embeddings(personas, dtype), body.get_input_embeddings()(input_ids)], dim=1)
        return {"inputs_embeds": embeddings, "attention_mask": mask}, self.config.virtual_tokens

    # ------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Write spm.safetensors (weights) and spm.json (config)."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "spm.safetensors"))
        atomic_write_json(folder / "spm.json", asdict(self.config))

    @classmethod
    def load(cls, folder: Path) -> "SoftPromptModel":
        """Rebuild a saved SPM (safetensors + JSON; no pickle)."""
        try:
            raw = json.loads((folder / "spm.json").read_text())
            shape = raw.pop("shape")
            config = SPMConfig(shape=SPMShape(tuple(map(tuple, shape["kv_shapes"])), shape["embed_dim"]), **raw)
            state = load_file(str(folder / "spm.safetensors"))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{folder}: not a saved SPM ({exc})") from None
        model = cls(config, state["persona_mean"], state["persona_scale"])
        model.load_state_dict(state)
        return model
