"""``persona-bench-spm``: the lm-eval model that steers a frozen LM with each doc's persona.

Every doc carries its persona vector (``doc["persona"]``); rows with different personas share a
batch, each with its own virtual tokens. The persona (with the SPM's weights) is part of each
request's key, both for sharing forwards and for the score cache: lm-eval's HFLM would share one
forward between identical prompt texts and its response cache hashes only the text, which would
give two people the same answer. (So do not wrap this model in lm-eval's ``--use_cache``.)
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from lm_eval.api.registry import register_model

from ...harness.lm import LetterScoringLM
from .model import SoftPromptModel


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:20]


@register_model("persona-bench-spm")
class SteeredLM(LetterScoringLM):
    """LetterScoringLM whose rows are steered by a soft-prompting model (see module docstring)."""

    def __init__(self, spm: SoftPromptModel | str | None = None, **kwargs):
        super().__init__(**kwargs)
        if spm is None:
            raise ValueError("persona-bench-spm needs spm=<folder with spm.safetensors and spm.json>")
        self.spm = (spm if isinstance(spm, SoftPromptModel) else SoftPromptModel.load(Path(spm))).to(self.device).eval()
        self.spm_fingerprint = weights_fingerprint(self.spm)
        self.personas: dict[str, torch.Tensor] = {}

    def request_key(self, request) -> str:
        vector = np.asarray(request.doc["persona"], dtype=np.float32)
        key = hashlib.sha256(self.spm_fingerprint.encode() + vector.tobytes()).hexdigest()[:24]
        self.personas.setdefault(key, torch.from_numpy(vector))
        return key

    def body_inputs(self, keys: list[str], input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[dict, int]:
        personas = torch.stack([self.personas[k] for k in keys]).to(input_ids.device)
        return self.spm.steer(self.body, personas, input_ids, attention_mask)
