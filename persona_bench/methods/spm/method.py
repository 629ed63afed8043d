"""``spm``: steer a frozen LM with a soft-prompting model fed the run's persona vectors.

Training, validation, checkpoints, reuse and scoring are the shared steering machinery
(:mod:`persona_bench.harness.training.learned`); this package gives the SPM's options and its recipes:

* ``paper``: the paper's optimisation (AdamW lr 1e-3, weight decay 1e-3, batch 16, up to 10
  epochs, early stopping with patience 2, constant learning rate) and initialisation;
* ``default``: the recipe that learned best at the budgets of the recipe table
  (benchmarks/README.md): outputs in units of the LM's own key/value size, every persona
  starting from the LM's own opening key/values (``sink``), a higher learning rate with warmup
  and cosine decay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...harness.core.options import option
from ...harness.method.base import register_method
from ...harness.scoring.lm import LetterScoringLM
from ...harness.scoring.steerer import Steerer
from ...harness.training.learned import LearnedSteering
from .model import INITS, MODES, PLACEMENTS, SoftPromptModel

ANSWER_CUE_TOKENS = 3  # "\nAnswer:" in byte-level BPE tokenizers (SmolLM2, GPT-2 family): a planning estimate

PAPER = {
    "epochs": 10, "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 16, "patience": 2, "warmup": 0.0, "schedule": "constant",
    "init": "paper", "placement": "start",
}


@register_method
class SoftPromptSteering(LearnedSteering):
    """The paper's soft-prompting model (prefix- or prompt-tuning)."""

    name = "spm"
    description = "soft-prompting model: persona vector -> MLP -> virtual tokens for the frozen LM"
    recipes: ClassVar[dict[str, dict]] = {
        "paper": PAPER,
        "default": {**PAPER, "lr": 1e-2, "warmup": 0.1, "schedule": "cosine", "init": "sink"},
    }
    default_recipe = "default"
    quick_options = {**LearnedSteering.quick_options, "virtual_tokens": 4}

    @dataclass(frozen=True)
    class Options(LearnedSteering.Options):
        mode: str = option("prefix", "prefix: key/values at every layer (prefix-tuning); prompt: virtual input embeddings "
                                     "(prompt-tuning)", choices=MODES)
        virtual_tokens: int = option(1, "virtual tokens the persona becomes")
        hidden: int = option(32, "hidden units of the persona MLP")
        init: str | None = option(None, "how the module starts (set by the recipe)", role="recipe", choices=INITS, untrained=True)
        placement: str | None = option(None, "start: before the prompt (the paper's); answer: just before the answer cue "
                                             "(set by the recipe)", choices=PLACEMENTS)

    @classmethod
    def check(cls, options: "SoftPromptSteering.Options") -> None:
        super().check(options)
        settings = cls.resolve(options)
        SoftPromptModel.Config(1, (), 0, settings["mode"], settings["virtual_tokens"], settings["hidden"], settings["init"], settings["placement"])

    @classmethod
    def shared_prompt_tokens(cls, settings: dict):
        """Placed before the answer, every token before the cue is the question's own, computed once
        for all personas; the cue (about 3 tokens) and prompt-mode virtual tokens run per persona."""
        if settings["placement"] != "answer":
            return super().shared_prompt_tokens(settings)
        per_row = ANSWER_CUE_TOKENS + (settings["virtual_tokens"] if settings["mode"] == "prompt" else 0)
        return lambda tokens: max(0, tokens - per_row)

    def build_steerer(self, lm: LetterScoringLM, persona_dim: int, settings: dict) -> Steerer:
        return SoftPromptModel.for_model(
            lm.model, persona_dim, mode=settings["mode"], virtual_tokens=settings["virtual_tokens"],
            hidden=settings["hidden"], init=settings["init"], placement=settings["placement"],
            answer_cue=lm.answer_cue() if settings["placement"] == "answer" else (),
        )
