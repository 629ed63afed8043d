"""LoRA adapters on the language model, through peft: attach, check, save, load, switch off.

The LM stays frozen; :func:`attach_lora` injects peft's LoRA layers into it in place (peft's
``get_peft_model``), so every scorer and trainer keeps calling the same model object and the one
steered forward (:mod:`persona_bench.harness.scoring.steering`) runs through the adapters. Only
the adapter weights take gradients. A saved adapter is peft's own format (``adapter_config.json``
+ ``adapter_model.safetensors``) and loads with ``PeftModel.from_pretrained`` outside
persona-bench.

Target modules default to peft's own choice per architecture (``q_proj``/``v_proj`` for Llama,
SmolLM2, GPT-Neo and GPT-J; ``query_key_value`` for Falcon and GPT-NeoX; ``c_attn`` for GPT-2).

Anything that caches what the model computes must know the adapter's state:
:func:`adapter_state` changes whenever an adapter weight changes in place (an optimiser step, a
load) or the adapters are switched off, and :func:`adapter_fingerprint` identifies the weights
across processes (the score cache).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..core.errors import ConfigError

ADAPTER_FOLDER = "adapter"  # beside a saved steering module
LORA_MARK = "lora_"  # peft's LoRA parameters are named ...lora_A... / ...lora_B...


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter's shape: rank, alpha (the update is scaled by alpha / rank), dropout and the
    target modules (empty: peft's default for the architecture)."""

    rank: int
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ConfigError(f"--lora-rank {self.rank}: a LoRA rank is 1 or more (0 means no adapter)")
        if self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError(f"--lora-alpha {self.alpha} / --lora-dropout {self.dropout}: alpha must be > 0 and 0 <= dropout < 1")


def parse_targets(text: str) -> tuple[str, ...]:
    """``q_proj,v_proj`` -> ("q_proj", "v_proj"); empty: the architecture's default."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct short names of the model's linear layers (what LoRA can target), the LM head excluded."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head})


def default_targets(model: torch.nn.Module) -> tuple[str, ...]:
    """peft's default LoRA targets for the model's architecture."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    found = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
    if not found:
        raise ConfigError(f"--lora-targets: peft has no default for {model.config.model_type!r}; name them "
                          f"(the model's linear modules: {', '.join(linear_module_names(model))})")
    return tuple(found)


def attach_lora(model: torch.nn.Module, settings: LoraSettings, seed: int = 0):
    """Inject LoRA layers into ``model`` in place (A seeded, B zero: the adapted model starts equal
    to the model) and return peft's ``PeftModel`` around it (for saving); only adapter weights train."""
    from peft import LoraConfig, get_peft_model

    if has_adapter(model):
        raise ConfigError("the model already carries a LoRA adapter")
    targets = settings.targets or default_targets(model)
    names = linear_module_names(model)
    missing = [target for target in targets if target not in names]
    if missing:
        raise ConfigError(f"--lora-targets {','.join(targets)}: {type(model).__name__} has no module named {', '.join(missing)} "
                          f"(its linear modules: {', '.join(names)})")
    from transformers.pytorch_utils import Conv1D

    transposed = any(isinstance(module, Conv1D) and name.rsplit(".", 1)[-1] in targets for name, module in model.named_modules())
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM", fan_in_fan_out=transposed)  # GPT-2's Conv1D stores weights transposed
    was_training = model.training
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)  # peft asks transformers' old name
        torch.manual_seed(seed)
        wrapped = get_peft_model(model, config)
    model.train(was_training)
    return wrapped


def adapter_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's LoRA weights, by name (none for a plain model)."""
    return [(name, parameter) for name, parameter in model.named_parameters() if LORA_MARK in name]


def has_adapter(model: torch.nn.Module) -> bool:
    return bool(adapter_parameters(model))


def adapters_enabled(model: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return not any(module.disable_adapters for module in model.modules() if isinstance(module, BaseTunerLayer))


@contextmanager
def adapters_off(model: torch.nn.Module, off: bool = True) -> Iterator[None]:
    """The model without its adapters while inside (the untrained control: LoRA starts at zero)."""
    if not off or not has_adapter(model):
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def adapter_training(model: torch.nn.Module, training: bool) -> None:
    """Switch the adapter's own dropout on for training steps (the frozen LM stays in eval mode)."""
    for name, module in model.named_modules():
        if "lora_dropout" in name:
            module.train(training)


def adapter_state(model: torch.nn.Module) -> tuple:
    """A cheap in-process key of the adapter's weights: changes when any is changed in place (an
    optimiser step, a load) or the adapters are switched off; ``()`` for a model without adapters."""
    weights = adapter_parameters(model)
    if not weights:
        return ()
    return (adapters_enabled(model), *((id(p), p._version) for _, p in weights))


def adapter_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the adapter's weights (empty without adapters): part of the score cache's model identity."""
    weights = adapter_parameters(model)
    if not weights:
        return ""
    digest = hashlib.sha256(str(adapters_enabled(model)).encode())
    for name, parameter in weights:
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:20]


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's weights that training changes: its adapter weights (none: the frozen LM)."""
    return [parameter for _, parameter in adapter_parameters(model) if parameter.requires_grad]


def save_adapter(wrapped, folder: Path) -> None:
    """Write the adapter in peft's format into ``folder`` (each file replaced atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        wrapped.save_pretrained(scratch)
        for name in os.listdir(scratch):
            os.replace(Path(scratch) / name, folder / name)


def load_adapter_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load adapter weights saved by :func:`save_adapter` into a model carrying the same adapter."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / "adapter_model.safetensors"
    try:
        state = load_file(str(path))
    except OSError as exc:
        raise ConfigError(f"{folder}: not a saved LoRA adapter ({exc})") from None
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ConfigError(f"{path}: weights {', '.join(unexpected[:3])} do not fit the model's adapter")
