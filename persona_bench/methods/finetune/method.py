"""``finetune``: a LoRA adapter on the LM (peft), trained on the train answers shown in a prompting
method's style, the fine-tuned rival of persona steering (SubPOP, Suh et al. 2025; Hwang et al. 2023).

``--prompt raw|demographics|context`` picks the prompt the adapter learns and is scored with,
exactly as the prompting method of that name renders it (``context``: the person's ``--k-context``
most similar earlier answers; a training answer's context holds the person's other train answers,
never a validation one). The loss is the cross-entropy of the person's letter among the question's
letters, as for ``spm``; the trainer is the shared one (recipes, leak-free validation, checkpoints
and mid-epoch resume, DDP under torchrun, ``--plan`` costs), with a steering module that steers
nothing (:mod:`.model`), so the adapter is all that learns. Its untrained control
(``--weights random``) is the base LM with the same prompt: LoRA starts at zero.

The trained adapter is saved in peft's format beside the run's shared training folder
(``best/adapter/``) and loads with ``PeftModel.from_pretrained`` outside persona-bench.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ...baselines.embedders import EMBEDDER_NAMES
from ...baselines.prompting import context_fields, demographics_fields
from ...harness.core.errors import ConfigError
from ...harness.core.options import option
from ...harness.method.base import register_method
from ...harness.method.context import RunContext
from ...harness.scoring.lm import LetterScoringLM
from ...harness.scoring.steerer import Steerer
from ...harness.training.learned import LearnedSteering
from .model import NoSteering

PROMPT_STYLES = {"raw": "opinionqa_persona_raw", "demographics": "opinionqa_persona_demographics", "context": "opinionqa_persona_context"}
# lr would drive a steering module's weights: finetune has none, its adapter learns at lora_lr
DEFAULT = {"epochs": 10, "lr": 5e-4, "lora_lr": 5e-4, "weight_decay": 1e-3, "batch_size": 16, "patience": 2, "warmup": 0.1, "schedule": "cosine"}


@register_method
class FineTune(LearnedSteering):
    """LoRA fine-tuning of the LM on the train answers, in a prompting method's prompt."""

    name = "finetune"
    kind = "finetuning"
    uses_persona = False
    description = "LoRA fine-tuning (peft) of the LM on the train answers, prompted as raw, demographics or context"
    recipes: ClassVar[dict[str, dict]] = {"default": DEFAULT}
    default_recipe = "default"

    @dataclass(frozen=True)
    class Options(LearnedSteering.Options):
        prompt: str = option("raw", "the prompt the adapter learns and is scored with, as the prompting method of that name renders it",
                             choices=tuple(PROMPT_STYLES))
        k_context: int = option(5, "with --prompt context: the person's earlier answers shown, most similar questions first")
        embedder: str = option("minilm", "with --prompt context: the question embedder", choices=EMBEDDER_NAMES)
        lora_rank: int = option(8, "rank of the LoRA adapter trained on the LM (peft)")

    @classmethod
    def check(cls, options: "FineTune.Options") -> None:
        if options.lora_rank < 1:  # before the shared checks, whose rank 0 means a frozen LM
            raise ConfigError(f"--lora-rank {options.lora_rank}: finetune trains a LoRA adapter, of rank 1 or more")
        super().check(options)
        if options.lr is not None:
            raise ConfigError(f"--lr {options.lr}: finetune trains its LoRA adapter alone, whose learning rate is --lora-lr")
        if options.k_context < 1:
            raise ConfigError(f"--k-context {options.k_context}: show 1 or more earlier answers")

    def prompt_task(self) -> str:
        return PROMPT_STYLES[self.options.prompt]

    def prompt_fields(self, context: RunContext, rows: pd.DataFrame, answered: pd.DataFrame) -> list[dict] | None:
        if self.options.prompt == "demographics":
            return demographics_fields(rows, context)
        if self.options.prompt == "context":
            return context_fields(rows, context, answered, self.options.k_context, self.options.embedder)
        return None

    def build_steerer(self, lm: LetterScoringLM, persona_dim: int, settings: dict) -> Steerer:
        return NoSteering(NoSteering.Config(persona_dim))

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray | None:
        """The adapted LM scores like a prompting method: no persona, so people asked the same prompt share a forward."""
        adapted = LetterScoringLM(model=self.lm.model, tokenizer=self.lm.tokenizer)
        return context.evaluate(self.prompt_task(), docs, adapted, self.prompt_fields(context, docs, context.known_answers()))
